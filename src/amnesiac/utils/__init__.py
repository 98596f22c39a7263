"""Small shared helpers, by theme: files (atomic writes), hashing (model states), ids (parsing requests),
progress (bars and log lines) and seeding. Everything is re-exported here."""

from .files import (
    atomic_write_bytes,
    atomic_write_json,
    exclusive_lock,
    fsync_dir,
    read_text_file,
    shared_lock_unless_busy,
    wait_for_lock,
)
from .hashing import (
    commit_ids,
    fingerprint,
    hash_ids,
    id_commitment,
    model_hash,
    model_state,
    new_secret,
    sampled_state_hash,
    state_hash,
)
from .ids import (
    MAX_REQUEST_IDS,
    as_id_array,
    parse_id_list,
    parse_ids,
    read_ids_file,
    strict_int_list,
)
from .machine import usable_cores
from .progress import LineProgress, progress_bar
from .seeding import seed_everything, seeded

__all__ = ["MAX_REQUEST_IDS", "LineProgress", "as_id_array", "atomic_write_bytes", "atomic_write_json", "exclusive_lock", "fingerprint", "fsync_dir",
           "commit_ids", "hash_ids", "id_commitment", "model_hash", "model_state", "new_secret", "parse_id_list", "sampled_state_hash", "parse_ids", "progress_bar", "read_ids_file",
           "read_text_file", "seed_everything", "seeded", "shared_lock_unless_busy", "state_hash", "strict_int_list",
           "usable_cores", "wait_for_lock"]
