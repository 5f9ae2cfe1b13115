"""daphne's HTTP server with each request checked at its head, before any of its body
is read or stored.

Twisted reads a request's whole body (into a temporary file past 100 KB) before daphne
hands the request to the app, and Django's handler reads all of it again before any
middleware runs: a client declaring 10 GB was stored in full, and answered only then,
token or not. `LimitedRequest` asks `codegen_site.middleware.head_refusal` (the rules the
middleware applies too) once the headers are in: a declared body over the limit is
answered 413, a call without the token 401, and the connection is closed with the body
unread. A chunked body is counted as it arrives and cut off (413) at the limit.

Imported by codegen_site.server only; daphne.server comes first, as it installs
Twisted's asyncio reactor."""

from __future__ import annotations

from io import BytesIO
from urllib.parse import unquote

from daphne.server import Server  # isort: skip  (installs the reactor before twisted.web loads)
from daphne.http_protocol import HTTPFactory, WebRequest

from codegen_site.middleware import body_refusal, head_refusal


class LimitedRequest(WebRequest):
    refused = False
    received = 0

    def gotLength(self, length):
        """Twisted calls this once all headers are in, before reading the body; the
        content file it makes (on disk past 100 KB) only exists for a body let in."""
        if length == 0:
            # Nothing to read: the middleware answers as it would here, after its Host
            # and Origin checks.
            return super().gotLength(length)
        # The request line is on the channel until the body is in; the path as daphne
        # gives it to Django (request.path).
        path = unquote(self.channel._path.split(b"?", 1)[0].decode("ascii", "replace"))
        # Repeated headers joined as Django's ASGIRequest joins them.
        authorization = b",".join(self.requestHeaders.getRawHeaders(b"Authorization", [])).decode("latin-1")
        cookies = {name.decode("latin-1").strip() for name in self.received_cookies}
        refusal = head_refusal(path, authorization, cookies, length)
        if refusal is None:
            return super().gotLength(length)
        self.content = BytesIO()
        self.refuse(refusal)

    def handleContentChunk(self, data):
        if self.refused:
            return
        self.received += len(data)
        refusal = body_refusal(self.received)  # a chunked body has no length to check at its head
        if refusal is not None:
            self.refuse(refusal)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        if self.refused:  # the body ended in the data already read; it goes nowhere
            return
        if self.requestHeaders.hasHeader(b"Transfer-Encoding"):
            # Django reads as many bytes as Content-Length says, none without it: a chunked
            # body, now whole, is given its length.
            self.requestHeaders.removeHeader(b"Transfer-Encoding")
            self.requestHeaders.setRawHeaders(b"Content-Length", [b"%d" % self.received])
        super().requestReceived(command, path, version)

    def refuse(self, response) -> None:
        """Send `response` (a Django HttpResponse) and close the connection; whatever of
        the body follows is never read."""
        self.refused = True
        # Twisted would send "100 Continue" after the answer, inviting the body.
        self.requestHeaders.removeHeader(b"Expect")
        head = [b"HTTP/1.1 %d %s" % (response.status_code, response.reason_phrase.encode("latin-1"))]
        head += [f"{name}: {value}".encode("latin-1") for name, value in response.items()]
        head += [b"Content-Length: %d" % len(response.content), b"Connection: close"]
        self.channel.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + response.content)
        self.channel.loseConnection()


class LimitedHTTPFactory(HTTPFactory):
    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = LimitedRequest
        return protocol


class LimitedServer(Server):
    """daphne's Server whose connections make LimitedRequests."""

    @property
    def http_factory(self):
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory):
        # Server.run builds daphne's factory and listens with it in one step; this one,
        # the same but for the request class, takes its place.
        self._http_factory = LimitedHTTPFactory(self)
