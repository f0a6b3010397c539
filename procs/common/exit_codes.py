"""What a process's exit status tells its supervisor.

``REFUSED``: the process would not start on its configuration and state as they are (a
units or fee change the journal forbids, a fenced journal, a standby refused): it logged one
line saying why and what to do. Starting it again changes neither, so the supervisor stops
the instance with that line at the first such exit of a restart rather than spend its
``restart_limit`` on the same refusal, and a systemd unit is not restarted on it
(``RestartPreventExitStatus``).
"""

from __future__ import annotations

from typing import Final

REFUSED: Final = 2
