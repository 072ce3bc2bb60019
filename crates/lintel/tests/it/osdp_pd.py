"""An OSDP reader for lintel's tests: libosdp's peripheral device (PyPI `libosdp`, the
reference implementation) on the far end of a pseudo-terminal.

Prints `PORT <path>` first: the serial device lintel opens. Then reads requests from
stdin, one a line, and prints one line per happening:

    card <hex> <bits>   the reader reads a card (bits left-justified in <hex>)
    keys <typed>        keys pressed on the keypad: digits, `*` and `#` (sent as OSDP
                        does: ASCII digits, 0x7F for `*`, 0x0D for `#`)
    inputs <bits>       the reader's inputs change: one 0 or 1 per input, input 0 first
                        (an input status report, answered to the next poll)
    tamper <0|1>        the reader's tamper switch (a local status report)
    status              -> STATUS online=<0|1> secure=<0|1>
    hangup              the line goes dead (lintel's side sees a hang-up); the reader
                        goes on at a new pseudo-terminal -> PORT <path>
    (end of input)      the reader stops

Every command lintel sends is printed as `COMMAND <json>` (bytes as hex), in order.
Options: --address N, --scbk HEX (absent: plain text), --install-mode (the reader has
no key of its own yet and takes one over a session with the default key).
"""

import argparse
import json
import os
import sys
import threading
import tty

import osdp

out = threading.Lock()


def say(line):
    with out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class PtyLink(osdp.Channel):
    """The master side of a pseudo-terminal; lintel holds the slave like a serial port."""

    def __init__(self, master):
        super().__init__()
        self.master = master

    def read(self, max_bytes):
        try:
            return os.read(self.master, max_bytes)
        except (BlockingIOError, OSError):
            # EIO until lintel opens the slave side: nothing to read yet.
            return b""

    def write(self, buf):
        try:
            return os.write(self.master, buf)
        except BlockingIOError:
            return 0

    def flush(self):
        pass


def new_line():
    """A pseudo-terminal, raw from the start: no echo, no line discipline in between."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave


def printable(value):
    if isinstance(value, (bytes, bytearray)):
        return value.hex().upper()
    return value


def on_command(command):
    say("COMMAND " + json.dumps({k: printable(v) for k, v in command.items()}, sort_keys=True))
    return 0, None


def main():
    args = argparse.ArgumentParser()
    args.add_argument("--address", type=int, default=1)
    args.add_argument("--scbk")
    args.add_argument("--install-mode", action="store_true")
    opts = args.parse_args()

    master, slave = new_line()

    flags = [osdp.LibFlag.InstallMode] if opts.install_mode else []
    scbk = bytes.fromhex(opts.scbk) if opts.scbk else None
    link = PtyLink(master)
    info = osdp.PDInfo(opts.address, link, scbk=scbk, flags=flags, name="it-reader")
    capabilities = osdp.PDCapabilities([
        (osdp.Capability.OutputControl, 1, 1),
        (osdp.Capability.LEDControl, 1, 1),
        (osdp.Capability.AudibleControl, 1, 1),
        (osdp.Capability.ContactStatusMonitoring, 1, 4),
    ])
    pd = osdp.PeripheralDevice(info, capabilities, log_level=osdp.LogLevel.Warning, command_handler=on_command)
    pd.start()
    say("PORT " + os.ttyname(slave))

    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "card":
            data = bytes.fromhex(words[1])
            pd.submit_event({
                "event": osdp.Event.CardRead,
                "reader_no": 0,
                "direction": 0,
                "format": osdp.CardFormat.Unspecified,
                "length": int(words[2]),
                "data": data,
            })
        elif words[0] == "keys":
            keys = words[1].encode().replace(b"*", b"\x7f").replace(b"#", b"\r")
            pd.submit_event({"event": osdp.Event.KeyPress, "reader_no": 0, "data": keys})
        elif words[0] == "inputs":
            report = bytes(int(bit) for bit in words[1])
            pd.submit_event({"event": osdp.Event.Status, "type": osdp.StatusReportType.Input, "report": report})
        elif words[0] == "tamper":
            report = bytes([int(words[1]), 0])
            pd.submit_event({"event": osdp.Event.Status, "type": osdp.StatusReportType.Local, "report": report})
        elif words[0] == "hangup":
            old_master, old_slave = link.master, slave
            master, slave = new_line()
            link.master = master
            os.close(old_slave)
            os.close(old_master)
            say("PORT " + os.ttyname(slave))
        elif words[0] == "status":
            say(f"STATUS online={int(pd.is_online())} secure={int(pd.is_sc_active())}")
        else:
            say("ERROR unknown request " + words[0])
    pd.teardown()
    os.close(slave)
    os.close(link.master)


if __name__ == "__main__":
    main()
