"""The media player that ``surgbox demo --play`` and ``surgbox events play`` pipe decrypted video into."""

from __future__ import annotations

import shlex
import shutil

from ..errors import ConfigError

# Tried in order when no --player is given; each reads the media from standard input.
DEFAULT_PLAYERS = (("ffplay", "ffplay -autoexit -loglevel error -i pipe:0"), ("mpv", "mpv --really-quiet -"))


def player_command(player: str | None) -> list[str]:
    """``--player CMD`` split into arguments, or the first installed default player.

    Raises :class:`ConfigError` naming the fix when neither is available."""
    if player:
        return shlex.split(player)
    for exe, cmd in DEFAULT_PLAYERS:
        if shutil.which(exe):
            return shlex.split(cmd)
    raise ConfigError("no player found: install ffplay (ffmpeg) or mpv, or give --player 'CMD ARGS' that reads stdin")
