"""The checks: http, tcp, dns and tls_expiry. They never raise.

Every check turns what happened into an `Observation` (ok, error kind, timings, detail);
`runner.to_result` turns observations into wire records. One `Checker` is shared by all
the checks of a process. The modules behind this package are private; what the rest of
the code uses is named here:

- `_spec`: `CheckSpec`, `CheckerConfig`, `Observation` and the validation of a spec
- `_failures`: `classify`, an exception -> the wire's error class and finer cause
- `_timings`: seconds measured -> milliseconds on the wire
- `_http`, `_tcp`, `_dns`, `_tls`: one check each; `_checker`: `Checker`, running them
"""

from ._checker import Checker
from ._dns import parse_nameserver
from ._failures import Failure, classify
from ._http import ROLE_HEADER
from ._spec import CheckerConfig, CheckSpec, Observation

__all__ = [
    "ROLE_HEADER",
    "CheckSpec",
    "Checker",
    "CheckerConfig",
    "Failure",
    "Observation",
    "classify",
    "parse_nameserver",
]
