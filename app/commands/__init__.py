"""The `sitewatch` commands, one module each (`sitewatch.commands.<name>`).

Each module holds its command's arguments and its start-up and nothing else:
`add_arguments(parser)` and `run(args, settings) -> int`. The domain packages
(streams, probes, sink, notify, api) hold no argparse code; `sitewatch.cli` imports
only the chosen command's module, so `sitewatch migrate` does not load Faust.
`probing` is not a command: the options and start-up `probe` and `verifier` share.
"""
