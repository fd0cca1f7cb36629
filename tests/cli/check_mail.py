"""Checks raw messages from smtp_sink.py with Python's email parser.

    python3 check_mail.py DIR KIND...    (KIND per message, in order:
                                          "news" or "receipt")

Prints one line per problem and exits 1 if there is any; on success prints
the List-Unsubscribe URL of the first marketing message.
"""
import email
import email.policy
import json
import os
import re
import sys

d = sys.argv[1]
kinds = sys.argv[2:]
problems = []
unsub = None
ids = set()


def bad(n, what):
    problems.append("message %d: %s" % (n, what))


for n, kind in enumerate(kinds):
    raw = open(os.path.join(d, "%03d.eml" % n), "rb").read()
    env = json.load(open(os.path.join(d, "%03d.json" % n)))
    try:
        raw.decode("ascii")
    except UnicodeDecodeError:
        bad(n, "is not 7-bit ASCII on the wire")
    head, _, body = raw.partition(b"\r\n\r\n")
    # lines fold at 78 (a List-Unsubscribe URL cannot be folded: 998 is the
    # rule there); an encoded word is at most 75 characters (RFC 2047)
    for line in raw.split(b"\r\n"):
        limit = 998 if line.startswith(b"List-Unsubscribe: ") else 78
        if len(line) > limit:
            bad(n, "a line of %d characters: %r" % (len(line), line[:60]))
            break
    for word in re.findall(rb"=\?[^?]+\?[bBqQ]\?[^?]*\?=", head):
        if len(word) > 75:
            bad(n, "an encoded word of %d characters" % len(word))
            break
    if kind == "news" and not re.search(rb"\r\nList-Unsubscribe: <http://[^>\r\n]+>\r\n", head):
        bad(n, "List-Unsubscribe is not a plain <URL> on the wire")
    if b"Subject: =?" not in head and kind == "news":
        bad(n, "the subject is not in encoded words")
    m = email.message_from_bytes(raw, policy=email.policy.default)
    if env["mail_from"] != "bounces@shop.test":
        bad(n, "envelope sender %r, want bounces@shop.test" % env["mail_from"])
    if env["rcpt_tos"] != ["ming@example.test"]:
        bad(n, "recipients %r" % env["rcpt_tos"])
    frm = m["From"].addresses[0]
    if frm.display_name != "关爱团队 Care" or frm.addr_spec != "care@shop.test":
        bad(n, "From %r / %r" % (frm.display_name, frm.addr_spec))
    to = m["To"].addresses[0]
    if to.display_name != "王小明" or to.addr_spec != "ming@example.test":
        bad(n, "To %r / %r" % (to.display_name, to.addr_spec))
    mid = m["Message-ID"]
    if not re.fullmatch(r"<\d+-\d+\.[0-9a-f]{16}@shop\.test>", str(mid)):
        bad(n, "Message-ID %r is not <key.random@shop.test>" % mid)
    if mid in ids:
        bad(n, "Message-ID %r repeats" % mid)
    ids.add(mid)
    if m["Date"] is None:
        bad(n, "no Date")
    if kind == "news":
        want = "王小明，春季新品上市：为您挑选的好物，限时优惠，先到先得 — spring arrivals picked for you"
        if str(m["Subject"]) != want:
            bad(n, "Subject %r" % str(m["Subject"]))
        if m.get_content_type() != "multipart/alternative":
            bad(n, "type %s, want multipart/alternative" % m.get_content_type())
            continue
        parts = list(m.iter_parts())
        if [p.get_content_type() for p in parts] != ["text/plain", "text/html"]:
            bad(n, "parts %r" % [p.get_content_type() for p in parts])
            continue
        for p in parts:
            if p["Content-Transfer-Encoding"] not in ("base64", "quoted-printable"):
                bad(n, "part encoding %r" % p["Content-Transfer-Encoding"])
        text = parts[0].get_content()
        if "您好！" not in text or "春" * 400 not in text:
            bad(n, "the text part lost the long paragraph")
        if "- <b>洗发水</b> ¥59.00" not in text:
            bad(n, "the text part's loop: %r" % text[-120:])
        html = parts[1].get_content()
        if "<li>&lt;b&gt;洗发水&lt;/b&gt; ¥59.00</li>" not in html:
            bad(n, "the html part is not escaped: %r" % html[-200:])
        lu = m["List-Unsubscribe"]
        if not lu or not re.fullmatch(r"<http://127\.0\.0\.1:\d+/v1/unsubscribe/[A-Za-z0-9_.-]+>", str(lu)):
            bad(n, "List-Unsubscribe %r" % lu)
        elif unsub is None:
            unsub = str(lu)[1:-1]
        if m["List-Unsubscribe-Post"] != "List-Unsubscribe=One-Click":
            bad(n, "List-Unsubscribe-Post %r" % m["List-Unsubscribe-Post"])
    else:
        if str(m["Subject"]) != "Order A1":
            bad(n, "Subject %r" % str(m["Subject"]))
        if m.get_content_type() != "text/plain":
            bad(n, "a text-only message is %s" % m.get_content_type())
        elif m.get_content().rstrip("\r\n") != "Thanks for order A1.":
            bad(n, "body %r" % m.get_content())
        if m["List-Unsubscribe"] is not None:
            bad(n, "a transactional message has List-Unsubscribe")

for p in problems:
    print(p)
if problems:
    sys.exit(1)
print(unsub)
