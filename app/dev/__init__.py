"""`sitewatch dev`: the whole system on one machine, with no setup.

A run (`session`) starts the bundled Tansu broker on a free port, migrates a SQLite
database under the state dir, serves the demo fleet or monitors the URLs of `--sites
FILE` (`sites`), publishes their `sites` records, and runs a probe, two verifiers, the
worker, the sink, the notifier and the API as child processes (`supervisor`). A live
view (`view`, rich) shows each site's state and the transitions as they happen, read
from `site-events` (`follower`); the notifier's webhooks go to a local receiver that
checks their signatures (`receiver`). Ctrl-C / SIGTERM / SIGHUP stop every child.
"""
