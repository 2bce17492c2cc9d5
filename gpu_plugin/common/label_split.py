"""Label-value splitting as upstream's ``pkg/deviceplugin/pluginutils`` does it.

Kubernetes label values are limited to 63 characters, so long values (GPU numbers, PCI
groups, Xe links) go over several keys: :func:`split_at_last_alnum` cuts after the last
ASCII alphanumeric that fits and prefixes continuation chunks; :func:`concat_split_chunks`
undoes it.  Shared by the labeler and the XPU Manager sidecar.
"""
from __future__ import annotations

import logging

LOG = logging.getLogger(__name__)

__all__ = ["split", "split_at_last_alnum", "concat_split_chunks"]


def split(text: str, max_length: int) -> list[str]:
    """``pluginutils.Split``: fixed-size chunks of at most ``max_length`` characters."""
    if len(text) <= max_length:
        return [text]
    return [text[i:i + max_length] for i in range(0, len(text), max_length)]


def _is_alnum(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9")


def split_at_last_alnum(text: str, max_length: int, concat_chars: str) -> list[str]:
    """``pluginutils.SplitAtLastAlphaNum``: cut after the last ASCII alphanumeric that fits; every chunk
    after the first starts with ``concat_chars``. An impossible split gives ``[]`` (as upstream)."""
    if max_length <= len(concat_chars):
        LOG.error("label split: max length %d not larger than the prefix %r", max_length, concat_chars)
        return []
    results: list[str] = []
    prefix = ""
    remaining = text
    while True:
        if len(remaining) <= max_length:
            results.append(prefix + remaining)
            return results
        cut = max_length - 1
        while cut >= 0 and not _is_alnum(remaining[cut]):
            cut -= 1
        if cut < 0:
            LOG.error("label split: chunk without alphanumeric characters: %s", remaining)
            return []
        cut += 1
        results.append(prefix + remaining[:cut])
        remaining = remaining[cut:]
        if not prefix:
            max_length -= len(concat_chars)
            prefix = concat_chars


def concat_split_chunks(chunks: list[str], concat_chars: str) -> str:
    """``pluginutils.ConcatAlphaNumSplitChunks``: the inverse of :func:`split_at_last_alnum`."""
    if len(chunks) == 1:
        return chunks[0]
    out = [chunks[0]]
    for chunk in chunks[1:]:
        if not chunk.startswith(concat_chars):
            LOG.warning("label chunk %r lacks the prefix %r", chunk, concat_chars)
        out.append(chunk[len(concat_chars):])
    return "".join(out)
