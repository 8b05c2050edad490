import signal
import sys


def _early_stop(signum, frame):
    """Ctrl-C while the command line module is still being imported: one line, exit 130."""
    sys.stderr.write("stopped\n")
    raise SystemExit(130)


signal.signal(signal.SIGINT, _early_stop)
from .cli import run  # noqa: E402

raise SystemExit(run())
