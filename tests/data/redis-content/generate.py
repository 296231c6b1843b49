#!/usr/bin/env python3
"""Writes the messages of tests/unit/redis_content_test.cc and what pymap
stores for each (tests/data/redis-content/README.md).

For every case below: <name>.eml (the message bytes) and <name>.expected,
lines of "<key> <value>":

  email-id          pymap's email id (M + adler32 of bytes(content))
  header            base64 of bytes(content.header)  (the `header` field)
  full-json         base64 of msgpack.packb(content.json)
  full-json-sha256  instead of full-json for large cases
  header-json       base64 of msgpack.packb(content.header.json)
  thread-key        base64 of '\\0'.join(key) for each ThreadKey.get_all(),
                    in order (UTF-8, as the Lua script gets it)

Usage: python3 generate.py PYMAP_SRC
where PYMAP_SRC holds pymap's package, e.g.
  git -C <pymap repo> archive 0.36.7 pymap | tar -x -C /tmp/pymap-src
pymap.mime and pymap.threads need only the standard library. msgpack is
not needed: pack() below writes what msgpack.packb writes for these types
(use_bin_type=True; tuples as arrays; shortest integer forms).
"""

import base64
import hashlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def pack(obj):
    out = bytearray()

    def header(n, fix, fix_max, codes):
        if n < fix_max:
            out.append(fix | n)
        elif n < 0x10000:
            out.extend(bytes([codes[0]]) + struct.pack('>H', n))
        else:
            out.extend(bytes([codes[1]]) + struct.pack('>I', n))

    def p(o):
        if isinstance(o, dict):
            header(len(o), 0x80, 16, (0xde, 0xdf))
            for k, v in o.items():
                p(k)
                p(v)
        elif isinstance(o, (list, tuple)):
            header(len(o), 0x90, 16, (0xdc, 0xdd))
            for v in o:
                p(v)
        elif isinstance(o, str):
            b = o.encode('utf-8')
            if len(b) < 32:
                out.append(0xa0 | len(b))
            elif len(b) < 0x100:
                out.extend(bytes([0xd9, len(b)]))
            elif len(b) < 0x10000:
                out.extend(b'\xda' + struct.pack('>H', len(b)))
            else:
                out.extend(b'\xdb' + struct.pack('>I', len(b)))
            out.extend(b)
        elif isinstance(o, int) and not isinstance(o, bool) and o >= 0:
            if o < 0x80:
                out.append(o)
            elif o < 0x100:
                out.extend(bytes([0xcc, o]))
            elif o < 0x10000:
                out.extend(b'\xcd' + struct.pack('>H', o))
            elif o < 0x100000000:
                out.extend(b'\xce' + struct.pack('>I', o))
            else:
                out.extend(b'\xcf' + struct.pack('>Q', o))
        else:
            raise TypeError(type(o))

    p(obj)
    return bytes(out)


def crlf(text):
    return text.replace(b'\n', b'\r\n')


def deep_rfc822(levels):
    return (b'Content-Type: message/rfc822\n\n' * levels
            + b'Subject: innermost\n\ntext\n')


# name -> (description, message bytes). Text is written with \n and turned
# into CRLF by crlf() where the case wants CRLF.
CASES = {
    'plain-crlf': ('text/plain, CRLF, unquoted charset', crlf(
        b'Return-Path: <carol@example.org>\n'
        b'Message-ID: <plain.1@example.org>\n'
        b'Date: Tue, 19 Nov 2024 15:07:40 -0500\n'
        b'From: Carol <carol@example.org>\n'
        b'To: Eve <eve@example.net>\n'
        b'Subject: Re: [team] Fwd: Lunch  plans\n'
        b'MIME-Version: 1.0\n'
        b'Content-Type: text/plain; charset=us-ascii\n'
        b'Content-Transfer-Encoding: 7bit\n'
        b'\n'
        b'See you at noon.\n'
        b'Carol\n')),
    'mixed-alternative-attachment': (
        'multipart/mixed: preamble, multipart/alternative, a PDF, epilogue',
        crlf(b'Message-ID: <mixed.2@example.org>\n'
             b'Subject: Report\n'
             b'MIME-Version: 1.0\n'
             b'Content-Type: multipart/mixed; boundary="=_outer"\n'
             b'\n'
             b'This is a multi-part message in MIME format.\n'
             b'--=_outer\n'
             b'Content-Type: multipart/alternative; boundary=inner\n'
             b'\n'
             b'--inner\n'
             b'Content-Type: text/plain; charset=utf-8\n'
             b'\n'
             b'Plain text.\n'
             b'--inner\n'
             b'Content-Type: text/html; charset=utf-8\n'
             b'\n'
             b'<p>HTML</p>\n'
             b'--inner--\n'
             b'--=_outer\n'
             b'Content-Type: application/pdf; name="report.pdf"\n'
             b'Content-Disposition: attachment; filename="report.pdf"\n'
             b'Content-Transfer-Encoding: base64\n'
             b'\n'
             b'JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K\n'
             b'--=_outer--\n'
             b'epilogue\n')),
    'rfc822-forward': (
        'multipart/mixed with a message/rfc822 part holding a multipart',
        crlf(b'Message-ID: <fwd.3@example.org>\n'
             b'Subject: Fwd: Minutes\n'
             b'Content-Type: multipart/mixed; boundary="b1"\n'
             b'\n'
             b'--b1\n'
             b'Content-Type: text/plain\n'
             b'\n'
             b'Forwarded below.\n'
             b'--b1\n'
             b'Content-Type: message/rfc822\n'
             b'Content-Disposition: inline\n'
             b'\n'
             b'Message-ID: <orig.4@example.net>\n'
             b'Subject: Minutes\n'
             b'Content-Type: multipart/alternative; boundary="b2"\n'
             b'\n'
             b'--b2\n'
             b'Content-Type: text/plain; charset="utf-8"\n'
             b'\n'
             b'minutes\n'
             b'--b2\n'
             b'Content-Type: text/html\n'
             b'\n'
             b'<b>minutes</b>\n'
             b'--b2--\n'
             b'\n'
             b'--b1--\n')),
    'rfc822-top': ('message/rfc822 as the whole message', crlf(
        b'Content-Type: message/rfc822\n'
        b'\n'
        b'Subject: inner\n'
        b'Content-Type: text/plain; format=flowed\n'
        b'\n'
        b'inner body\n')),
    'encoded-words': (
        'RFC 2047 words (q, b, adjacent, in a quoted parameter) and RFC 2231 parameters',
        crlf(b'Message-ID: <ew.5@example.org>\n'
             b'From: =?iso-8859-1?q?J=F6rg?= <joerg@example.org>\n'
             b'Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= =?utf-8?b?IGF1cyBNw7xuY2hlbg==?=\n'
             b'  =?UTF-8?Q?_=F0=9F=8E=89?=\n'
             b'Content-Type: multipart/mixed; boundary=x\n'
             b'\n'
             b'--x\n'
             b'Content-Type: application/pdf;\n'
             b' name="=?utf-8?q?r=C3=A9sum=C3=A9.pdf?="\n'
             b'\n'
             b'pdf\n'
             b'--x\n'
             b"Content-Type: text/plain; name*=utf-8''%E2%82%AC%20rates.txt\n"
             b'\n'
             b'euro\n'
             b'--x\n'
             b"Content-Type: text/plain; name*0*=iso-8859-1''%E9t%E9; name*1=.txt\n"
             b'\n'
             b'summer\n'
             b'--x--\n')),
    'raw-utf8-headers': (
        'raw UTF-8 (and one invalid byte) in Subject, From and a parameter',
        crlf(b'Message-ID: <utf8.6@example.org>\n'
             b'From: J\xc3\xb6rg <joerg@example.org>\n'
             b'Subject: Gr\xc3\xbc\xc3\x9fe aus M\xc3\xbcnchen \xf0\x9f\x8e\x89\n'
             b'Content-Type: text/plain; charset=utf-8; name="na\xc3\xafve \xff.txt"\n'
             b'\n'
             b'Gr\xc3\xbc\xc3\x9fe\n')),
    'charsets': (
        'encoded words in single-byte and multi-byte charsets',
        crlf(b'Message-ID: <cs.7@example.org>\n'
             b'Subject: =?windows-1252?q?=93quoted=94?= =?koi8-r?b?8NLJ18XU?=\n'
             b' =?iso-2022-jp?b?GyRCRnxLXBsoQg==?= =?x-unknown?q?=C3=A9?=\n'
             b'\n'
             b'body\n')),
    'lf-only': ('multipart/alternative with LF line ends', (
        b'Message-ID: <lf.8@example.org>\n'
        b'Subject: LF only\n'
        b'Content-Type: multipart/alternative; boundary="lf"\n'
        b'\n'
        b'--lf\n'
        b'Content-Type: text/plain\n'
        b'\n'
        b'one\n'
        b'--lf\n'
        b'Content-Type: text/html\n'
        b'\n'
        b'<i>two</i>\n'
        b'--lf--\n')),
    'no-trailing-newline': ('the body ends without a line break', crlf(
        b'Message-ID: <eol.9@example.org>\n'
        b'Subject: No EOL\n'
        b'\n'
        b'last line')),
    'header-only': (
        'no body: the blank line that ends the header is the last line',
        crlf(b'Message-ID: <hdr.10@example.org>\n'
             b'Subject: header only\n')),
    'no-header': ('no blank line at all: no header, every line is body', crlf(
        b'Subject: this is not a header\n'
        b'because no blank line follows')),
    'folded-content-type': (
        'Content-Type folded over three lines, odd case, spaces, a comment',
        crlf(b'Message-ID: <fold.11@example.org>\n'
             b'Subject: folded\n'
             b'CONTENT-TYPE: Multipart/Mixed;\n'
             b'\tBoundary="XyZ" ;\n'
             b' CHARSET = UTF-8 (comment) ;Format=Flowed\n'
             b'\n'
             b'--XyZ\n'
             b'Content-type: TEXT/Plain (note);charset="us-ascii"\n'
             b'\n'
             b'part\n'
             b'--XyZ--\n')),
    'odd-parameters': (
        'duplicate, empty and broken parameters; a Content-Type Python fails on',
        crlf(b'Message-ID: <odd.12@example.org>\n'
             b'Content-Type: multipart/mixed; boundary=a; BOUNDARY=b;\n'
             b' boundary=c; x; y=; z="q\\"uote"; junk here; ;\n'
             b'\n'
             b'--b\n'
             b'Content-Type: text/plain;\n'
             b'\n'
             b'empty parameter list\n'
             b'--b\n'
             b'Content-Type: text/plain; name*\n'
             b'\n'
             b'Python raises IndexError: text/plain\n'
             b'--b\n'
             b'Content-Type: text/html\n'
             b'Content-Type: text/plain\n'
             b'\n'
             b'two Content-Types: the first counts\n'
             b'--b\n'
             b'Content-Type: multipart/mixed\n'
             b'\n'
             b'multipart without a boundary is a leaf\n'
             b'--b--\n')),
    'unclosed-boundary': (
        'boundary never closed, lines that only look like boundaries, an empty part',
        crlf(b'Content-Type: multipart/mixed; boundary="u"\n'
             b'\n'
             b'--u\n'
             b'--u\n'
             b'Content-Type: text/plain\n'
             b'\n'
             b'--u \n'
             b'--u--x\n'
             b' --u\n'
             b'--u\n'
             b'Content-Type: message/rfc822\n'
             b'\n')),
    'header-edges': (
        'a leading continuation line, a line without colon, a blank line of spaces',
        crlf(b' leading continuation\n'
             b'Subject: edges\n'
             b'no colon here\n'
             b'X-Folded: one\n'
             b'\ttwo\n'
             b'  \t\n'
             b'body after a whitespace-only line\n')),
    'thread-keys': (
        'Message-ID with a comment, In-Reply-To, folded References, a long Re:/Fwd:/[tag] subject',
        crlf(b'Message-ID: (comment) <tk.13@example.org>\n'
             b'In-Reply-To: <parent@example.org> <other@example.org>\n'
             b'References: <root@example.org>\n'
             b'\t<parent@example.org> < spaced @ example.org >\n'
             b'Subject: RE: Fwd : [list] [x]  Budget\t\tplan \n'
             b'\n'
             b'body\n')),
    'message-id-odd': (
        'a msg-id without ">" (Python adds it), and an empty one',
        crlf(b'Message-ID: <open@example.org\n'
             b'In-Reply-To: <>\n'
             b'Subject: [only a tag]\n'
             b'\n'
             b'body\n')),
    'empty': ('zero bytes', b''),
    'crlf-only': ('one line break', b'\r\n'),
    'deep-rfc822-100': (
        '100 nested message/rfc822 parts: the deepest mailfs parses (kMaxNestingDepth)',
        deep_rfc822(100)),
}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.path.insert(0, sys.argv[1])
    from pymap.bytes import HashStream
    from pymap.mime import MessageContent
    from pymap.threads import ThreadKey

    for name, (description, message) in CASES.items():
        content = MessageContent.parse(message)
        full_json = pack(content.json)
        lines = [
            '# ' + description,
            '# Written by generate.py (pymap 0.36.7, Python %d.%d.%d); do not edit.'
            % sys.version_info[:3],
            'email-id M' + HashStream().digest(content).hex(),
            'header ' + base64.b64encode(bytes(content.header)).decode(),
        ]
        if len(full_json) > 4096:
            lines.append('full-json-sha256 ' + hashlib.sha256(full_json).hexdigest())
        else:
            lines.append('full-json ' + base64.b64encode(full_json).decode())
        lines.append('header-json ' + base64.b64encode(pack(content.header.json)).decode())
        for key in ThreadKey.get_all(content.header):
            lines.append('thread-key ' + base64.b64encode('\0'.join(key).encode()).decode())
        with open(os.path.join(HERE, name + '.eml'), 'wb') as f:
            f.write(message)
        with open(os.path.join(HERE, name + '.expected'), 'w') as f:
            f.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
