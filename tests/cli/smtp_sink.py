"""A real SMTP server for tests (aiosmtpd) that keeps what it receives.

    python3 smtp_sink.py DIR

Listens on 127.0.0.1 on a free port, writes the port to DIR/port, and for
each message DIR/NNN.eml (the DATA exactly as received) and DIR/NNN.json
(the envelope: mail_from, rcpt_tos). Exits after 120 s at most, so a test
that dies cannot leave it running.
"""
import json
import os
import socket
import sys
import time

from aiosmtpd.controller import Controller

out = sys.argv[1]


class Keep:
    async def handle_DATA(self, server, session, envelope):
        n = len([f for f in os.listdir(out) if f.endswith(".json")])
        with open(os.path.join(out, "%03d.eml" % n), "wb") as f:
            f.write(envelope.original_content)
        with open(os.path.join(out, "%03d.json.tmp" % n), "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
        os.rename(os.path.join(out, "%03d.json.tmp" % n), os.path.join(out, "%03d.json" % n))
        return "250 OK"


s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
c = Controller(Keep(), hostname="127.0.0.1", port=port)
c.start()
with open(os.path.join(out, "port.tmp"), "w") as f:
    f.write(str(port))
os.rename(os.path.join(out, "port.tmp"), os.path.join(out, "port"))
time.sleep(120)
c.stop()
