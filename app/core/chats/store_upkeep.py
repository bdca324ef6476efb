"""The store's care of deleted chats and backups: erase the bin for good, take backups."""

from __future__ import annotations

from app.core.chats import backups, purge
from app.core.chats.store_base import StoreBase


class UpkeepStore(StoreBase):
    """Erasing binned conversations (and their traces) and the rolling backups."""

    def backup_now(self) -> backups.Backup:
        """Take a backup now into `backups.backup_folder(path)`, dropping the oldest extra.

        Raises:
            StorageFullError: no room for it (nothing is left half-written).
            DatabaseDamagedError: the copy failed its integrity check (it is not kept).
        """
        return backups.make_backup(self.path)

    def backups(self) -> tuple[backups.Backup, ...]:
        """The rolling backups, newest first, each with its size (for the settings view)."""
        return backups.list_backups(backups.backup_folder(self.path))

    def purge_deleted(self, *, deleted_before: float | None = None) -> int:
        """Erase binned conversations for good (those binned before a time, if given).

        Their messages go with them, and no trace of their text stays in the file: deleted
        pages are zeroed (`secure_delete`), the full-text index is rebuilt without them,
        the WAL is emptied and the file vacuumed when much of it is free (see `purge`).
        They are erased from the rolling backups too. Returns how many conversations were
        erased; KV snapshots of them are the caller's.
        """
        where = "deleted_at IS NOT NULL" if deleted_before is None else "deleted_at < ?"
        params = () if deleted_before is None else (deleted_before,)
        with self.transaction() as conn:
            ids = [
                row[0]
                for row in conn.execute(f"SELECT id FROM conversations WHERE {where}", params)
            ]
            conn.executemany("DELETE FROM conversations WHERE id = ?", [(i,) for i in ids])
            if ids:
                purge.drop_index_traces(conn)
        if ids:
            with self._lock, self._faults():
                purge.compact(self._connection())
            backups.erase_from_backups(self.path, ids)
        return len(ids)
