"""The workbench as a local web page: the standard library's threaded HTTP server and Jinja2 templates
(autoescaped: every model output is shown as text). No script runs on the page; its policy forbids any.

    GET  /            who are you (once, a cookie), then the labeller's item, or the arena's prompt box
    POST /name        the labeller's name
    POST /ask         arena: a typed prompt; two anonymous checkpoints answer (GET /vote?token=... shows them)
    POST /submit      token, choice (and the text of a correction): recorded, then back to / (PRG)

A form is refused, with the reason and nothing recorded, when a field is missing or repeated, the token is
unknown, replayed or someone else's, the choice is not offered, or the post comes from another origin.
"""

from __future__ import annotations

import http.server
import signal
import sys
import urllib.parse
from http import HTTPStatus
from http.cookies import SimpleCookie

import jinja2

from selfplay.label.queue import FormError
from selfplay.label.workbench import View, Workbench

MAX_BODY = 64 * 1024
NAME_CHARS = 64

_PAGES = {
    "base.html": """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>selfplay label: {{ mode }}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}
h2{font-size:.9rem;color:#555;text-transform:uppercase;letter-spacing:.05em;margin:1rem 0 .3rem}
pre{white-space:pre-wrap;background:#f4f4f4;padding:.6rem;border-radius:4px;margin:.3rem 0;font-size:1rem}
code{font-size:1rem;background:#f4f4f4;padding:.1rem .3rem;border-radius:3px}
.opts{margin-top:.8rem;display:grid;grid-template-columns:repeat(auto-fit,minmax(15rem,1fr));gap:.8rem}
.opt{border:1px solid #ccc;border-radius:6px;padding:.6rem;display:flex;flex-direction:column}
button{font-size:1rem;margin:.2rem .3rem .2rem 0;padding:.3rem .8rem;border-radius:4px;cursor:pointer}
.opt button,.primary{background:#2b6cb0;color:#fff;border:1px solid #2b6cb0}
.opt button{margin-top:auto;align-self:flex-start}
button:focus-visible{outline:2px solid #2b6cb0}.more{margin-top:.8rem}
textarea{width:100%;box-sizing:border-box;font-family:monospace;font-size:1rem}
.muted{color:#777}.error{color:#b00}
</style></head><body>
<p class="muted">selfplay label &middot; {{ mode }}{% if labeller %} &middot; {{ labeller }}:
{{ mine }} labelled, {{ done }} items done{% endif %}</p>
{% block body %}{% endblock %}</body></html>""",
    "name.html": """{% extends "base.html" %}{% block body %}
<h1>Who is labelling?</h1>
<form method="post" action="/name"><input name="labeller" id="labeller" maxlength="64" autofocus>
<button id="start">Start</button></form>{% endblock %}""",
    "item.html": """{% extends "base.html" %}{% block body %}
<h2>Prompt</h2><pre id="prompt">{{ view.prompt }}</pre>
<form method="post" action="/submit"><input type="hidden" name="token" value="{{ view.token }}">
{% if view.mode == "correct" %}
<h2>The model's answer</h2><pre id="answer">{{ view.options[0][1] }}</pre>
<p class="muted">{{ view.judged }}</p>
{% if view.suggestion is not none %}<p>Suggested: <code id="suggestion">{{ view.suggestion }}</code>
<button name="choice" value="accept" id="accept" class="primary">Accept it</button></p>{% endif %}
<p><label for="text">The right answer</label><textarea name="text" id="text" rows="3"></textarea></p>
<button name="choice" value="write" id="write" class="primary">Save my answer</button>
<button name="choice" value="skip" id="skip">Skip: the answer is right</button>
{% else %}{% set best = "best" if view.options|length > 2 else "better" %}
<div class="opts">{% for choice, text in view.options %}<div class="opt">
<pre id="option-{{ loop.index0 }}">{{ text }}</pre>
<button name="choice" value="{{ choice }}" id="pick-{{ choice }}" accesskey="{{ loop.index }}">
{{ "ABC"[loop.index0] }} is {{ best }}</button>
</div>{% endfor %}</div>
<p class="more"><button name="choice" value="tie" id="pick-tie" accesskey="t">Tie</button>
{% set bad = "all_bad" if view.mode == "compare" else "both_bad" %}
<button name="choice" value="{{ bad }}" id="pick-{{ bad }}" accesskey="x">
{{ "All" if view.mode == "compare" else "Both" }} bad</button></p>
{% endif %}</form>{% endblock %}""",
    "ask.html": """{% extends "base.html" %}{% block body %}
{% if reveal %}<p id="reveal">You voted <b>{{ reveal.winner }}</b>: A was <b>{{ reveal.a.model }}</b>,
B was <b>{{ reveal.b.model }}</b>.</p>{% endif %}
<h2>Ask two anonymous models</h2>
<form method="post" action="/ask"><textarea name="prompt" id="prompt-box" rows="3" autofocus></textarea>
<button id="ask">Ask</button></form>{% endblock %}""",
    "message.html": """{% extends "base.html" %}{% block body %}
<p id="message" class="{{ kind }}">{{ message }}</p><p><a href="/" id="back">Back</a></p>{% endblock %}""",
}
_TEMPLATES = jinja2.Environment(
    loader=jinja2.DictLoader(_PAGES), autoescape=True, undefined=jinja2.StrictUndefined
)
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make a browser post `Origin: null`
    "Cache-Control": "no-store",
}


def make_server(
    bench: Workbench, *, host: str = "127.0.0.1", port: int = 0
) -> http.server.ThreadingHTTPServer:
    """The workbench's HTTP server (not yet serving); `server.server_address` has the port it got."""

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "selfplay-label"

        def log_message(self, fmt, *args):  # one short line a request, on stderr
            sys.stderr.write(
                f"label: {self.command} {self.path.split('?')[0]} {args[1] if len(args) > 1 else ''}\n"
            )

        # --- responses ------------------------------------------------------------------------
        def _send(self, status: HTTPStatus, page: str, headers: dict | None = None, **values) -> None:
            labeller = self._labeller()
            mine, done = bench.queue.progress(labeller) if labeller else (0, 0)
            body = (
                _TEMPLATES.get_template(page)
                .render(mode=bench.mode, labeller=labeller, mine=mine, done=done, **values)
                .encode()
            )
            self.send_response(status)
            for k, v in {**_HEADERS, "Content-Type": "text/html; charset=utf-8", **(headers or {})}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _redirect(self, to: str, headers: dict | None = None) -> None:
            self.send_response(HTTPStatus.SEE_OTHER)
            for k, v in {**_HEADERS, "Location": to, "Content-Length": "0", **(headers or {})}.items():
                self.send_header(k, v)
            self.end_headers()

        def _refuse(self, status: HTTPStatus, message: str) -> None:
            self._send(status, "message.html", message=f"Refused: {message}", kind="error")

        # --- requests -------------------------------------------------------------------------
        def _labeller(self) -> str:
            morsel = SimpleCookie(self.headers.get("Cookie", "")).get("labeller")
            return urllib.parse.unquote(morsel.value) if morsel else ""

        def _host_ok(self) -> bool:
            """Requests must name this server (a page on another site cannot reach it by DNS rebinding)."""
            if host not in ("127.0.0.1", "localhost", "::1"):
                return True
            port = self.server.server_address[1]
            return self.headers.get("Host", "") in {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}

        def do_GET(self) -> None:
            if not self._host_ok():
                return self._refuse(HTTPStatus.MISDIRECTED_REQUEST, "unexpected Host header")
            url = urllib.parse.urlsplit(self.path)
            labeller = self._labeller()
            if url.path not in ("/", "/vote"):
                return self._refuse(HTTPStatus.NOT_FOUND, f"no page {url.path}")
            if not labeller:
                return self._send(HTTPStatus.OK, "name.html")
            if bench.mode == "arena":
                token = urllib.parse.parse_qs(url.query).get("token", [""])[0]
                if url.path == "/vote":
                    claim = bench.queue.claim_of(token)
                    if claim is None or claim.labeller != labeller:
                        return self._refuse(HTTPStatus.NOT_FOUND, "no such vote of yours")
                    return self._send(HTTPStatus.OK, "item.html", view=bench.view(claim))
                return self._send(HTTPStatus.OK, "ask.html", reveal=bench.queue.record(token, labeller))
            view = bench.next(labeller)
            if view is None:
                return self._send(
                    HTTPStatus.OK, "message.html", message="Nothing left to label.", kind="done"
                )
            return self._send(HTTPStatus.OK, "item.html", view=view)

        def _form(self) -> dict[str, str]:
            """The post's fields, each given once; FormError for anything else."""
            origin = self.headers.get("Origin")
            if origin is not None and urllib.parse.urlsplit(origin).netloc != self.headers.get("Host"):
                raise FormError(f"a post from another origin ({origin})")
            if self.headers.get_content_type() != "application/x-www-form-urlencoded":
                raise FormError("a form post must be application/x-www-form-urlencoded")
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                raise FormError("a form post needs its Content-Length") from None
            if not 0 <= length <= MAX_BODY:
                raise FormError(f"a form post of {length} bytes (at most {MAX_BODY})")
            try:
                body = self.rfile.read(length).decode("utf-8")
                fields = urllib.parse.parse_qs(body, keep_blank_values=True, strict_parsing=bool(body))
            except (UnicodeDecodeError, ValueError):
                raise FormError("the form is not valid urlencoded UTF-8") from None
            if any(len(v) != 1 for v in fields.values()):
                raise FormError("a field was given twice")
            return {k: v[0] for k, v in fields.items()}

        def _field(self, form: dict[str, str], key: str) -> str:
            if key not in form:
                raise FormError(f"the form has no {key!r} field")
            return form[key]

        def do_POST(self) -> None:
            if not self._host_ok():
                return self._refuse(HTTPStatus.MISDIRECTED_REQUEST, "unexpected Host header")
            path = urllib.parse.urlsplit(self.path).path
            try:
                form = self._form()
                if path == "/name":
                    name = self._field(form, "labeller").strip()
                    if not name or len(name) > NAME_CHARS or not name.isprintable():
                        raise FormError(f"a name is 1 to {NAME_CHARS} printable characters")
                    cookie = f"labeller={urllib.parse.quote(name)}; Path=/; HttpOnly; SameSite=Strict"
                    return self._redirect("/", {"Set-Cookie": cookie})
                labeller = self._labeller()
                if not labeller:
                    raise FormError("who is labelling? open / and give your name first")
                if path == "/ask":
                    view = bench.ask(labeller, self._field(form, "prompt"))
                    return self._redirect(f"/vote?token={view.token}")
                if path != "/submit":
                    return self._refuse(HTTPStatus.NOT_FOUND, f"no form {path}")
                token = self._field(form, "token")
                bench.submit(labeller, token, self._field(form, "choice"), form.get("text", ""))
            except FormError as e:
                return self._refuse(HTTPStatus.BAD_REQUEST, str(e))
            if bench.mode == "arena":
                return self._redirect(f"/?token={token}")
            return self._redirect("/")

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve(bench: Workbench, *, host: str = "127.0.0.1", port: int = 8765) -> int:
    """Serve until interrupted (Ctrl-C, SIGTERM); every answer is saved as it comes."""
    server = make_server(bench, host=host, port=port)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops it as Ctrl-C does
    h, p = server.server_address[:2]
    print(f"label {bench.mode}: open http://{'localhost' if h == '127.0.0.1' else h}:{p}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        bench.close()
    return 0


__all__ = ["View", "make_server", "serve"]
