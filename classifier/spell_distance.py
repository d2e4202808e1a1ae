"""Edit distances between a typed word and a dictionary word.

``osa_distance`` is the plain optimal-string-alignment (restricted Damerau-
Levenshtein) distance, used to decide which words are near enough at all.
``edit_cost`` weighs the same edits by how people mistype, to rank the near
words: a doubled letter or a neighbouring key is a likelier slip than an
arbitrary substitution.
"""

from __future__ import annotations

# Weights of typing slips in edit_cost (an arbitrary edit costs 1): letters are
# more often left out than typed in extra, and doubles are the commonest slip.
EXTRA_LETTER = 1.0
MISSING_LETTER = 0.75
DOUBLING = 0.5
SWAP = 0.75
NEAR_SUBSTITUTION = 0.85
SUBSTITUTION = 1.0


def keyboard_neighbours() -> dict[str, frozenset[str]]:
    """Return, for each letter, the letters next to it on a QWERTY keyboard."""
    rows = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
    near: dict[str, set[str]] = {c: set() for row in rows for c in row}
    for r, row in enumerate(rows):
        for i, c in enumerate(row):
            near[c].update(row[max(i - 1, 0) : i + 2])
            if r + 1 < len(rows):  # the row below is shifted right by half a key
                near[c].update(rows[r + 1][max(i - 1, 0) : i + 1])
                for below in rows[r + 1][max(i - 1, 0) : i + 1]:
                    near[below].add(c)
    return {c: frozenset(n - {c}) for c, n in near.items()}


NEIGHBOURS = keyboard_neighbours()
VOWELS = frozenset("aeiouy")


def osa_distance(a: str, b: str) -> int:
    """Return the optimal-string-alignment (Damerau) distance of ``a`` and ``b``.

    Hyyrö's bit-parallel algorithm (2003): one pass over ``b`` with bit vectors
    over ``a``, several times faster in pure Python than the dynamic programme.
    """
    if not a:
        return len(b)
    block: dict[str, int] = {}
    bit = 1
    for ch in a:
        block[ch] = block.get(ch, 0) | bit
        bit <<= 1
    vp, vn, d0, pm_old, dist, mask = bit - 1, 0, 0, 0, len(a), 1 << (len(a) - 1)
    for ch in b:
        pm = block.get(ch, 0)
        swapped = (((~d0) & pm) << 1) & pm_old
        d0 = ((((pm & vp) + vp) ^ vp) | pm | vn) | swapped
        hp = vn | ~(d0 | vp)
        hn = d0 & vp
        if hp & mask:
            dist += 1
        elif hn & mask:
            dist -= 1
        hp = (hp << 1) | 1
        vp = (hn << 1) | ~(d0 | hp)
        vn = hp & d0
        pm_old = pm
    return dist


def substitution_cost(x: str, y: str) -> float:
    """Cost of typing ``x`` for ``y``: cheaper for neighbouring keys and vowel for vowel."""
    if x == y:
        return 0.0
    if y in NEIGHBOURS.get(x, ()) or (x in VOWELS and y in VOWELS):
        return NEAR_SUBSTITUTION
    return SUBSTITUTION


def letter_costs(word: str, cost: float) -> list[float]:
    """Cost of dropping or adding each letter of ``word``: ``cost``, less for doubles and ``'``."""
    return [
        DOUBLING if c == "'" or (i and word[i - 1] == c) or word[i + 1 : i + 2] == c else cost
        for i, c in enumerate(word)
    ]


def edit_cost(typed: str, intended: str) -> float:
    """Return the weighted OSA cost of turning ``typed`` into ``intended``.

    Typing slips cost less than an arbitrary edit (1): a doubled or undoubled
    letter or a missing apostrophe 0.5, a missing letter or swapped letters
    0.75, a neighbouring key or a vowel for a vowel 0.85.
    """
    a, b = typed, intended
    drop, add = letter_costs(a, EXTRA_LETTER), letter_costs(b, MISSING_LETTER)
    prev2: list[float] = []
    prev = [0.0]
    for cost in add:
        prev.append(prev[-1] + cost)
    for i in range(1, len(a) + 1):
        row = [prev[0] + drop[i - 1]] + [0.0] * len(b)
        for j in range(1, len(b) + 1):
            best = min(
                prev[j] + drop[i - 1],
                row[j - 1] + add[j - 1],
                prev[j - 1] + substitution_cost(a[i - 1], b[j - 1]),
            )
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1] != a[i - 1]:
                best = min(best, prev2[j - 2] + SWAP)
            row[j] = best
        prev2, prev = prev, row
    return prev[-1]
