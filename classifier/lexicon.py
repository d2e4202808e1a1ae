"""The spelling dictionary: English word frequencies plus the IT lexicon, compiled once.

The general dictionary is symspellpy's ``frequency_dictionary_en_82_765.txt``
(Google Books counts; mostly British spellings), supplemented by the commoner
words of pyspellchecker's ``en.json.gz`` (American spellings and inflections
such as "traveling", "centers"); both are read as data files, neither package's
code is imported. On first use they are merged with
``classifier/data/it_lexicon.txt`` and a symmetric-delete index is
built: for every word, the deletions of up to ``MAX_DISTANCE`` letters from its
first ``PREFIX_LENGTH`` letters, each stored as a CRC-32 key in a sorted
``array`` beside the word's index and the number of deletions. The result is
written to a cache file named after a hash of the data files and the build
parameters (``~/.cache/mailtriage/spelling-<hash>.marshal`` by default), so a
later start only loads it: about 0.1 s and 30 MB, against a few seconds to build.

Hash collisions in the index only add spurious candidates; the corrector
measures the real edit distance of every candidate, so they cost nothing else.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import logging
import marshal
import os
import tempfile
import zlib
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from classifier.spell_distance import edit_cost, osa_distance
from config.errors import DataError

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
CACHE_MAGIC = b"MTSPELL\x00"
MAX_DISTANCE = 2
PREFIX_LENGTH = 7
DEPTH_SHIFT = 30  # index slots: deletions made from the word (2 bits) above its index
SLOT_MASK = (1 << DEPTH_SHIFT) - 1
GENERAL_DICTIONARY = ("symspellpy", "frequency_dictionary_en_82_765.txt")
SUPPLEMENT_DICTIONARY = ("spellchecker", "resources/en.json.gz")  # pyspellchecker
LEXICON_FILE = "it_lexicon.txt"
NAMES_FILE = "spell_first_names.txt"
# Count given to lexicon terms missing from the general list: about the
# 20,000th most frequent English word, common enough to be suggested.
IT_DEFAULT_COUNT = 1_000_000
MIN_LENGTH = 4  # shorter words are never corrected: too many real words are one edit apart
TWO_EDIT_LENGTH = 6
SLIP_COST = 0.85  # the edit_cost of one typical slip: a double, swap, missing letter, near key


class DictionaryMissing(DataError):
    """An English frequency list could not be found (are symspellpy and pyspellchecker installed?)."""


@dataclass(frozen=True, slots=True)
class SpellData:
    """The compiled dictionary: words with counts, IT terms, names and the delete index."""

    words: list[str]
    counts: list[int]
    it_terms: frozenset[str]
    names: frozenset[str]
    keys: array
    slots: array


def read_word_list(text: str) -> list[str]:
    """Return the lowercase entries of a one-term-per-line file, comments dropped."""
    terms = []
    for line in text.splitlines():
        term = line.split("#", 1)[0].strip().lower()
        if term:
            terms.append(term)
    return terms


def prefix_deletes(word: str, max_depth: int = MAX_DISTANCE) -> dict[str, int]:
    """Map ``word``'s prefix and each string made by deleting letters from it to the deletions."""
    level = {word[:PREFIX_LENGTH]}
    found = dict.fromkeys(level, 0)
    for depth in range(1, max_depth + 1):
        level = {w[:i] + w[i + 1 :] for w in level if len(w) > 1 for i in range(len(w))}
        for fragment in level:
            found.setdefault(fragment, depth)
    return found


def key_of(fragment: str) -> int:
    """Return the stable index key of a delete fragment."""
    return zlib.crc32(fragment.encode("utf-8", errors="surrogatepass"))


def package_file(package: str, relative: str) -> Path:
    """Return the path of a data file shipped in ``package``, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DictionaryMissing(f"{package} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise DictionaryMissing(f"{path} is missing")
    return path


def read_sources() -> dict[str, bytes]:
    """Return the raw bytes of the general list, the supplement, the IT lexicon and the names."""
    data_dir = resources.files("classifier") / "data"
    return {
        "general": package_file(*GENERAL_DICTIONARY).read_bytes(),
        "supplement": package_file(*SUPPLEMENT_DICTIONARY).read_bytes(),
        "lexicon": (data_dir / LEXICON_FILE).read_bytes(),
        "names": (data_dir / NAMES_FILE).read_bytes(),
    }


def default_cache_dir() -> Path:
    """Return ``$XDG_CACHE_HOME/mailtriage`` (``~/.cache/mailtriage`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mailtriage"


def merge_counts(
    general: str, supplement: dict[str, int], lexicon: list[str]
) -> tuple[list[str], list[int]]:
    """Return the words and counts of all three sources, most frequent first.

    Supplement words are taken above its floor count only (its floor holds rare
    words and some misspellings), scaled to the general list's counts by "the".
    """
    counts: dict[str, int] = {}
    for line in general.splitlines():
        word, _, count = line.partition(" ")
        if word and count.strip().isdigit():
            counts[word.lower()] = max(counts.get(word.lower(), 0), int(count))
    floor = min(supplement.values(), default=0)
    scale = counts.get("the", 1) / max(supplement.get("the", 1), 1)
    for word, count in supplement.items():
        if count > floor and word.lower() not in counts:
            counts[word.lower()] = int(count * scale)
    for term in lexicon:
        counts.setdefault(term, IT_DEFAULT_COUNT)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [w for w, _ in ordered], [c for _, c in ordered]


def build_index(words: list[str]) -> tuple[array, array]:
    """Return the sorted delete keys and, parallel to them, ``depth << DEPTH_SHIFT | word index``."""
    import numpy as np  # only needed when (re)building the cache

    keys, slots = array("I"), array("I")
    prefix, prefix_keys, depths = "", [], []
    # Words sharing a prefix share its fragments: visit them together, compute once.
    for slot in sorted(range(len(words)), key=lambda i: words[i][:PREFIX_LENGTH]):
        if words[slot][:PREFIX_LENGTH] != prefix:
            prefix = words[slot][:PREFIX_LENGTH]
            fragments = prefix_deletes(prefix).items()
            prefix_keys = [key_of(f) for f, _ in fragments]
            depths = [d << DEPTH_SHIFT for _, d in fragments]
        keys.extend(prefix_keys)
        slots.extend([depth | slot for depth in depths])
    item = np.dtype(f"u{keys.itemsize}")
    key_np = np.frombuffer(keys, dtype=item)
    order = np.argsort(key_np, kind="stable")
    sorted_keys, sorted_slots = array("I"), array("I")
    sorted_keys.frombytes(key_np[order].tobytes())
    sorted_slots.frombytes(np.frombuffer(slots, dtype=item)[order].tobytes())
    return sorted_keys, sorted_slots


def compile_data(sources: dict[str, bytes]) -> SpellData:
    """Compile the dictionary from the raw sources of ``read_sources()``."""
    lexicon = read_word_list(sources["lexicon"].decode("utf-8"))
    supplement = json.loads(gzip.decompress(sources["supplement"]))
    words, counts = merge_counts(sources["general"].decode("utf-8"), supplement, lexicon)
    keys, slots = build_index(words)
    names = frozenset(read_word_list(sources["names"].decode("utf-8")))
    return SpellData(words, counts, frozenset(lexicon), names, keys, slots)


def write_cache(path: Path, data: SpellData) -> None:
    """Write ``data`` to ``path`` atomically: a marshal header, then the two raw index arrays."""
    header = marshal.dumps(
        (
            FORMAT_VERSION,
            data.words,
            data.counts,
            sorted(data.it_terms),
            sorted(data.names),
            len(data.keys),
        )
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(CACHE_MAGIC + len(header).to_bytes(8, "little"))
            handle.write(header)
            data.keys.tofile(handle)
            data.slots.tofile(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_cache(path: Path) -> SpellData:
    """Return the ``SpellData`` cached at ``path``; ``ValueError`` if it is not a valid cache."""
    with path.open("rb") as handle:
        if handle.read(len(CACHE_MAGIC)) != CACHE_MAGIC:
            raise ValueError("not a spelling cache")
        size = int.from_bytes(handle.read(8), "little")
        if size > path.stat().st_size:
            raise ValueError("spelling cache is truncated")
        fields = marshal.loads(handle.read(size))  # noqa: S302 - our own file, see write_cache
        if not isinstance(fields, tuple) or len(fields) != 6 or fields[0] != FORMAT_VERSION:
            raise ValueError("not a spelling cache of this format")
        _, words, counts, it_terms, names, length = fields
        keys, slots = array("I"), array("I")
        keys.fromfile(handle, length)
        slots.fromfile(handle, length)
        if len(words) != len(counts) or handle.read(1):
            raise ValueError("spelling cache is inconsistent")
    return SpellData(words, counts, frozenset(it_terms), frozenset(names), keys, slots)


def load_spell_data(cache_dir: Path | None = None) -> SpellData:
    """Return the compiled dictionary from the cache, compiling and caching it if needed."""
    sources = read_sources()
    digest = hashlib.sha256(f"{FORMAT_VERSION}:{MAX_DISTANCE}:{PREFIX_LENGTH}".encode())
    for name in sorted(sources):
        digest.update(hashlib.sha256(sources[name]).digest())
    path = (cache_dir or default_cache_dir()) / f"spelling-{digest.hexdigest()[:16]}.marshal"
    try:
        return read_cache(path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError, EOFError, TypeError) as exc:
        log.warning("spelling cache %s unreadable (%s); rebuilding", path, exc)
    data = compile_data(sources)
    try:
        write_cache(path, data)
    except OSError as exc:
        log.warning("cannot write spelling cache %s: %s", path, exc)
    return data


class SpellLexicon:
    """Word counts, IT terms and first names, with lookup of near-miss candidates."""

    def __init__(self, data: SpellData) -> None:
        self._words = data.words
        self._counts = dict(zip(data.words, data.counts, strict=True))
        self._keys = data.keys
        self._slots = data.slots
        self.it_terms = data.it_terms
        self.names = data.names

    @classmethod
    def load(cls, cache_dir: Path | None = None) -> SpellLexicon:
        """Return the lexicon, from the compiled cache in ``cache_dir`` when there is one."""
        return cls(load_spell_data(cache_dir))

    def __len__(self) -> int:
        """Return the number of known words."""
        return len(self._words)

    def is_known(self, word: str) -> bool:
        """Is the lowercase ``word`` a dictionary word or IT term?"""
        return word in self._counts

    def is_slip(self, typed: str, word: str) -> bool:
        """Is ``typed`` one likely typing slip away from ``word``, with the first letter right?"""
        return typed[:1] == word[:1] and edit_cost(typed, word) <= SLIP_COST

    def count(self, word: str) -> int:
        """Return the corpus count of the lowercase ``word`` (0 if unknown)."""
        return self._counts.get(word, 0)

    def near_words(self, word: str, limit: int) -> set[str]:
        """Return the known words within OSA distance ``limit`` (1 or 2) of ``word``, but itself.

        Two words within distance d share a fragment made by at most d deletions
        from each one's prefix; the index yields those words, which are then checked.
        """
        keys, slots, words, end = self._keys, self._slots, self._words, len(self._keys)
        allowed = limit << DEPTH_SHIFT | SLOT_MASK
        found = set()
        for fragment in prefix_deletes(word, limit):
            key = key_of(fragment)
            i = bisect_left(keys, key)
            while i < end and keys[i] == key:
                if slots[i] <= allowed:
                    found.add(words[slots[i] & SLOT_MASK])
                i += 1
        size = len(word)
        return {
            w
            for w in found
            if abs(len(w) - size) <= limit and w != word and osa_distance(word, w) <= limit
        }

    def suggest(self, word: str) -> str | None:
        """Return the best correction of the unknown lowercase ``word``, or None if none is close.

        Known words one edit away win; words of ``TWO_EDIT_LENGTH`` letters or more
        may be two edits away, with the first letter kept, when nothing is one
        away. Among them IT terms win, then the lowest ``edit_cost``, then the
        more frequent word.
        """
        if len(word) < MIN_LENGTH or len(set(word)) <= 2:  # "xxxxx", "hahaha"
            return None
        found = self.near_words(word, 1)
        if not found and len(word) >= TWO_EDIT_LENGTH:
            found = {w for w in self.near_words(word, 2) if w[0] == word[0]}
        preferred = (found & self.it_terms) or found
        if len(preferred) <= 1:
            return next(iter(preferred), None)
        return min(preferred, key=lambda w: (edit_cost(word, w), -self.count(w), w))
