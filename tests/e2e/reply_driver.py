"""Stream one reply headless, saving it as the app does: worker signals into a ReplyWriter.

    python -m tests.e2e.reply_driver --data-dir DIR --model PATH --prompt TEXT

Creates a conversation in DIR's store, asks the real `InferenceThread` for a greedy reply
with token data (each `tokens` signal carries text and records), appends both to a `ReplyWriter`
(saves at most every 0.5 s, plus a 250 ms flush timer) and prints `SENT` once the request
is queued. The kill -9 test kills it mid-reply and reads what the saves left.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QObject, QTimer, Slot

from app.core.chats.reply_writer import ReplyWriter
from app.core.chats.store import Store
from app.core.inference.events import GenerationDone
from app.core.inference.load_options import LoadOptions
from app.core.inference.messages import Message
from app.core.inference.sampling import SamplingSettings
from app.core.paths import app_paths
from app.workers.inference_thread import InferenceThread

SETTINGS = SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=400)
SAVE_INTERVAL_S = 0.5


class Saver(QObject):
    """Saves each streamed chunk's text and token records, as a controller would."""

    def __init__(self, writer: ReplyWriter) -> None:
        super().__init__()
        self.writer = writer

    @Slot(int, str, object)
    def on_tokens(self, _request_id: int, text: str, records: object) -> None:
        assert isinstance(records, tuple)
        self.writer.append(text, records)

    @Slot()
    def flush(self) -> None:
        self.writer.flush()

    @Slot(int, object)
    def on_finished(self, _request_id: int, done: object) -> None:
        assert isinstance(done, GenerationDone)
        self.writer.finish_generation(done, settings=SETTINGS)
        QCoreApplication.quit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--prompt", required=True)
    args = parser.parse_args(argv)

    app = QCoreApplication(sys.argv[:1])
    store = Store.open(app_paths(args.data_dir).ensure())
    chat = store.create_conversation("Counting")
    user = store.add_user_message(chat.id, args.prompt)
    reply = store.start_reply(user.id, model=args.model.name, settings=SETTINGS)
    saver = Saver(ReplyWriter(store, reply.id, interval=SAVE_INTERVAL_S))
    timer = QTimer()
    timer.setInterval(250)
    timer.timeout.connect(saver.flush)
    timer.start()

    inference = InferenceThread()
    worker = inference.worker
    worker.tokens.connect(saver.on_tokens)
    worker.finished.connect(saver.on_finished)
    inference.start()
    inference.load(args.model, LoadOptions(n_ctx=1024, n_threads=1))
    inference.generate(1, [Message("user", args.prompt)], SETTINGS, 10)
    print("SENT", flush=True)
    try:
        return int(app.exec())
    finally:
        inference.stop()
        store.close()


if __name__ == "__main__":
    sys.exit(main())
