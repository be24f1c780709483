"""`mip6mon keys import-xfrm`: the kernel's ESP SAs into a keyring.

    mip6mon keys import-xfrm -o KEYRING [--from FILE|-] [--netns NAME] [--mobile-node NAME]
                             [--replace] [--skip-unsupported]

Reads `ip xfrm state` (run here, in a network namespace with --netns, or saved output with
--from), keeps the ESP SAs, maps the kernel's algorithms to PROFILE.md's and adds them to the
keyring (keys.keyring_edit). An ESP SA that PROFILE.md cannot express stops the import, named
with the reason, unless --skip-unsupported; states that are not ESP (route2, hao, AH, IPComp)
are skipped with a note. What it prints names SPIs, addresses and algorithms, never keys.
"""
from __future__ import annotations

import argparse
import sys

from keys import xfrm
from keys.errors import UserError
from keys.keyring import EspSa
from keys.keyring_edit import Merge, merge_esp_sas, title


def _source_text(args: argparse.Namespace) -> tuple[str, str]:
    """(the `ip xfrm state` text, where it came from)."""
    if args.source is None:
        argv = f"ip{' -n ' + args.netns if args.netns else ''} xfrm state"
        return xfrm.read_kernel_states(args.netns), f"`{argv}`"
    if args.netns:
        raise UserError("--from and --netns: give one of them")
    if args.source == "-":
        return sys.stdin.read(), "standard input"
    try:
        with open(args.source, encoding="utf-8") as f:
            return f.read(), args.source
    except FileNotFoundError:
        raise UserError(f"{args.source}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{args.source}: cannot read: {exc.__class__.__name__}") from None


def _line(what: str, sa: EspSa) -> str:
    return f"  {what:<9}{title(sa)}  {sa.encryption} / {sa.authentication}"


def command_import_xfrm(args: argparse.Namespace) -> int:
    text, origin = _source_text(args)
    selection = xfrm.select(xfrm.parse_states(text))
    if selection.unsupported and not args.skip_unsupported:
        state, reason = selection.unsupported[0]
        raise UserError(f"{state.title}: {reason}; nothing was imported "
                        "(--skip-unsupported imports the others)")
    if not selection.sas:
        raise UserError(f"no ESP SA to import in {origin}")
    merge = merge_esp_sas(args.output, [sa for _, sa in selection.sas], args.mobile_node,
                          args.replace, note="from ip xfrm state")
    _summary(args.output, merge)
    # what was left out, once the import is done (an error above stays the only line)
    if selection.other:
        kinds = sorted({s.proto if s.proto != "esp" else (s.event or "larval").lower()
                        for s in selection.other})
        print(f"mip6mon: note: skipped {len(selection.other)} state(s) that are not ESP SAs "
              f"({', '.join(kinds)})", file=sys.stderr)
    for state, reason in selection.unsupported:
        print(f"mip6mon: warning: skipped {state.title}: {reason}", file=sys.stderr)
    return 0


def _summary(path: str, merge: Merge) -> None:
    verb = "created" if merge.created else "updated" if merge.added or merge.replaced else "kept"
    print(f"{path}: {verb}; {len(merge.added)} ESP SA(s) added, {len(merge.replaced)} replaced, "
          f"{len(merge.present)} already there")
    for what, sas in (("added", merge.added), ("replaced", merge.replaced),
                      ("present", merge.present)):
        for sa in sas:
            print(_line(what, sa))
    if merge.narrowed_mode is not None:
        print(f"mip6mon: note: {path} was mode {merge.narrowed_mode:04o}, now "
              f"{merge.narrowed_mode & 0o600:04o} (it holds keys)", file=sys.stderr)


COMMANDS = {"import-xfrm": command_import_xfrm}


def command_keys(args: argparse.Namespace) -> int:
    return COMMANDS[args.keys_command](args)

