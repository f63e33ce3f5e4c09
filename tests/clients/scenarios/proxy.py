"""A TCP proxy between the clients and the server, which the scenarios control: cut
the network (open connections dropped, new ones refused), restore it, slow it down, or
let requests through and lose their answers (the server did the work, the client never
heard)."""

import asyncio


class Proxy:
    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.up = True
        self.lose_answers = False
        self.delay = 0.0  # seconds before each chunk the server sends is passed on
        self.answers_lost = 0
        self._conns: set = set()
        self._server = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        self.up = False
        for writer in list(self._conns):
            writer.transport.abort()
        self._conns.clear()

    async def close(self) -> None:
        self.cut()
        self._server.close()
        await self._server.wait_closed()

    def restore(self) -> None:
        self.up = True
        self.lose_answers = False
        self.delay = 0.0

    async def _serve(self, reader, writer) -> None:
        try:
            await self._relay(reader, writer)
        except asyncio.CancelledError:  # the loop is closing
            writer.transport.abort()

    async def _relay(self, reader, writer) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._conns.update({writer, up_writer})
        try:
            await asyncio.gather(self._pipe(reader, up_writer, False),
                                 self._pipe(up_reader, writer, True))
        finally:
            for w in (writer, up_writer):
                self._conns.discard(w)
                w.transport.abort()

    async def _pipe(self, reader, writer, answers: bool) -> None:
        try:
            while chunk := await reader.read(65536):
                if answers and self.lose_answers:
                    self.answers_lost += 1
                    raise ConnectionError("answer lost")
                if answers and self.delay:
                    await asyncio.sleep(self.delay)
                if not self.up:
                    raise ConnectionError("network cut")
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
