"""How a check's exception becomes the wire's error class (and its finer cause)."""

from __future__ import annotations

import errno
import socket
import ssl
from typing import Final

from sitewatch.streams.enums import ErrorCause, ErrorKind

from ..http1 import HttpProtocolError
from ..safety import BlockedTargetError, InvalidTargetError

#: (class, finer cause) of a failure; the class alone is what consumers filter on
Failure = tuple[ErrorKind, ErrorCause | None]

_X509_V_ERR_CERT_HAS_EXPIRED: Final = 10
_UNREACHABLE: Final = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH})
_GAI_CAUSES: Final[dict[int, ErrorCause]] = {
    socket.EAI_NONAME: ErrorCause.NXDOMAIN,
    getattr(socket, "EAI_NODATA", socket.EAI_NONAME): ErrorCause.NO_ADDRESS,
}


def _os_failure(exc: BaseException | None) -> Failure:
    if isinstance(exc, ConnectionRefusedError):
        return ErrorKind.CONNECT, ErrorCause.REFUSED
    if isinstance(exc, ConnectionResetError):
        return ErrorKind.CONNECT, ErrorCause.RESET
    if isinstance(exc, TimeoutError):
        return ErrorKind.TIMEOUT, None
    code = exc.errno if isinstance(exc, OSError) else None
    if code == errno.ECONNRESET:
        return ErrorKind.CONNECT, ErrorCause.RESET
    if code == errno.ECONNREFUSED:
        return ErrorKind.CONNECT, ErrorCause.REFUSED
    if code in _UNREACHABLE:
        return ErrorKind.CONNECT, ErrorCause.UNREACHABLE
    return ErrorKind.CONNECT, None


def _dns_failure(exc: BaseException | None) -> Failure:
    code = exc.errno if isinstance(exc, socket.gaierror) else None
    return ErrorKind.DNS, _GAI_CAUSES.get(code) if code is not None else None


def classify(exc: BaseException) -> Failure:
    """Map an exception of a check to the wire's error class and its finer cause."""
    if isinstance(exc, BlockedTargetError):
        return ErrorKind.BLOCKED_TARGET, None
    if isinstance(exc, InvalidTargetError):
        return ErrorKind.INVALID_TARGET, None
    if isinstance(exc, ssl.SSLCertVerificationError):
        expired = exc.verify_code == _X509_V_ERR_CERT_HAS_EXPIRED
        return (ErrorKind.TLS_EXPIRED if expired else ErrorKind.SSL), None
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return ErrorKind.SSL, None
    if isinstance(exc, socket.gaierror):
        return _dns_failure(exc)
    if isinstance(exc, TimeoutError):
        return ErrorKind.TIMEOUT, None
    if isinstance(exc, OSError):
        return _os_failure(exc)
    if isinstance(exc, HttpProtocolError):
        return ErrorKind.CONNECT, ErrorCause.PROTOCOL  # the server spoke something else
    if isinstance(exc, ValueError | UnicodeError):
        return ErrorKind.INVALID_TARGET, None  # e.g. a URL yarl refuses, a header value
    return ErrorKind.CONNECT, ErrorCause.INTERNAL  # a bug of ours: the check could not run


def describe(exc: BaseException) -> str:
    """An observation's `detail` for a failure: the exception's type and words."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]
