"""Small shared helpers, by theme: files (atomic writes), hashing (model states), ids (parsing requests),
progress (bars and log lines) and seeding. Everything is re-exported here."""

from .files import atomic_write_bytes, atomic_write_json, fsync_dir, read_text_file
from .hashing import fingerprint, hash_ids, model_hash, model_state, state_hash
from .ids import (
           MAX_REQUEST_IDS,
           parse_id_list,
           parse_ids,
           read_ids_file,
           strict_int_list,
)
from .progress import LineProgress, progress_bar
from .seeding import seed_everything, seeded

__all__ = ["MAX_REQUEST_IDS", "LineProgress", "atomic_write_bytes", "atomic_write_json", "fingerprint", "fsync_dir",
           "hash_ids", "model_hash", "model_state", "parse_id_list", "parse_ids", "progress_bar", "read_ids_file",
           "read_text_file", "seed_everything", "seeded", "state_hash", "strict_int_list"]
