"""Where a search lives: checking a storage URL, opening it (heartbeat or not), finding a study.

Nothing here writes before the URL is checked: a refused command leaves the storage as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

#: Heartbeat of server databases (PostgreSQL, MySQL): a dead worker's trial is failed and redone
#: after 3 missed beats. SQLite and journal files serve one machine, where the lifecycle proves
#: a worker's death from its process (see :mod:`tinytnas_optuna._recovery`).
HEARTBEAT_SECONDS = 60

JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")
#: Seconds an SQLite writer waits for another process's write before giving up.
SQLITE_BUSY_SECONDS = 60


@dataclass(frozen=True)
class StorageSpec:
    """A storage URL checked without touching it.

    Attributes:
        url: As given.
        sqlite_path: The SQLite file, if it is one.
        journal_path: The journal file, if it is one.
    """

    url: str
    sqlite_path: Path | None = None
    journal_path: Path | None = None

    def exists(self) -> bool:
        """False when the storage certainly holds nothing yet (a missing file)."""
        path = self.sqlite_path or self.journal_path
        return path is None or path.exists()

    def default_artifacts(self) -> Path:
        """``<file>-artifacts`` beside a file storage, else ``./tinytnas-artifacts``."""
        return self._beside("artifacts")

    def default_model(self) -> Path:
        """``<file>-model`` beside a file storage, else ``./tinytnas-model``."""
        return self._beside("model")

    def _beside(self, what: str) -> Path:
        path = self.sqlite_path or self.journal_path
        if path is not None:
            return path.with_name(f"{path.stem}-{what}")
        return Path(f"tinytnas-{what}")


def parse_storage(url: str) -> StorageSpec:
    """Check a storage URL's form and, for files, that their folder exists.

    Args:
        url: ``sqlite:///file.db``, another SQLAlchemy URL, or a journal file path (``.log``).

    Returns:
        The :class:`StorageSpec`.

    Raises:
        ValueError: A malformed URL, an in-memory database, or a missing folder.

    Examples:
        >>> parse_storage("sqlite:///tinytnas.db").sqlite_path.name
        'tinytnas.db'
    """
    if "://" not in url:
        if not url.endswith(JOURNAL_SUFFIXES):
            raise ValueError(f"--storage {url!r}: expected a database URL such as "
                             "sqlite:///tinytnas.db or a journal file ending in .log")
        path = Path(url).expanduser().resolve()
        if not path.parent.is_dir():
            raise ValueError(f"--storage {url!r}: folder {path.parent} does not exist")
        return StorageSpec(url, journal_path=path)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"--storage {url!r}: {' '.join(str(exc).split())}") from None
    if parsed.get_backend_name() != "sqlite":
        return StorageSpec(url)
    if not parsed.database or parsed.database == ":memory:":
        raise ValueError(f"--storage {url!r}: an in-memory database keeps nothing; "
                         "give a file, e.g. sqlite:///tinytnas.db")
    path = Path(parsed.database).expanduser().resolve()
    if not path.parent.is_dir():
        raise ValueError(f"--storage {url!r}: folder {path.parent} does not exist")
    return StorageSpec(url, sqlite_path=path)


def open_storage(spec: StorageSpec | str, *, existing: bool = False
                 ) -> optuna.storages.BaseStorage:
    """Open (and for a new database, create) the storage.

    Args:
        spec: The checked storage, or its URL (checked here).
        existing: Refuse a database file that does not exist instead of creating it.

    Returns:
        The Optuna storage: a journal, SQLite without heartbeat, or a server database with a
        :data:`HEARTBEAT_SECONDS` heartbeat.

    Raises:
        ValueError: A malformed URL, or (``existing``) no such database file.
        RuntimeError: The database cannot be opened.
    """
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    spec = parse_storage(spec) if isinstance(spec, str) else spec
    if existing and not spec.exists():
        raise ValueError(f"--storage {spec.url}: no such database file")

    if spec.journal_path is not None:
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(spec.journal_path)))
    try:
        if spec.sqlite_path is not None:
            # A search's processes (--jobs) write one file: each waits for the others' short
            # writes (up to a minute) instead of failing, and in WAL mode readers never block
            # the writer (the mode is a property of the file, kept for every later opener).
            storage = optuna.storages.RDBStorage(
                spec.url, engine_kwargs={"connect_args": {"timeout": SQLITE_BUSY_SECONDS}})
            with storage.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")
            return storage
        return optuna.storages.RDBStorage(spec.url, heartbeat_interval=HEARTBEAT_SECONDS,
                                          grace_period=3 * HEARTBEAT_SECONDS)
    except (SQLAlchemyError, ImportError, ValueError, OSError) as exc:  # server, driver, URL
        raise RuntimeError(f"cannot open storage {spec.url}: {' '.join(str(exc).split())}") \
            from None


def find_study(spec: StorageSpec, name: str) -> optuna.Study | None:
    """The study if the storage holds it; never creates the storage.

    Args:
        spec: The checked storage.
        name: Study name.

    Returns:
        The study, or None.
    """
    import optuna

    if not spec.exists():
        return None
    try:
        return optuna.load_study(study_name=name, storage=open_storage(spec))
    except KeyError:
        return None


def load_search_study(spec: StorageSpec | str, name: str) -> optuna.Study:
    """A study a search ran on (from Python or the shell); refuses anything else, writing nothing.

    Args:
        spec: The checked storage, or its URL (checked here).
        name: Study name.

    Returns:
        The study.

    Raises:
        ValueError: No such file or study (naming the studies there), or a study no
            TinyTNASObjective ever ran on.
    """
    import optuna

    spec = parse_storage(spec) if isinstance(spec, str) else spec
    if not spec.exists():
        raise ValueError(f"--storage {spec.url}: no such database file")
    study = find_study(spec, name)
    if study is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(open_storage(spec))]
        known = f"; studies there: {', '.join(names)}" if names else "; it holds no study"
        raise ValueError(f"no study {name!r} in {spec.url}{known}")
    if "budget" not in study.user_attrs:
        raise ValueError(f"study {name!r} was not made by a TinyTNAS search (no "
                         "TinyTNASObjective ever ran on it)")
    return study
