"""Unloaded / loaded levels per block and the gait-capable blocks (steps 1-2 of the method in
:mod:`processing.analytics.events`).

Levels are kept per absolute block number (blocks of ``block_n`` samples aligned to sample 0), so a span
of a longer signal gets the levels the whole signal would give it; a block's level is computed once, when
its window (blocks *j-1 .. j+1*), one second before it for the flat test and room for gap filling are there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from processing.analytics.event_params import EventParams


def _columns_reduce(op: np.ufunc, a: np.ndarray) -> np.ndarray:
    """``op.reduce(a, axis=1)`` for a short second axis, as a loop over its columns (much faster)."""
    out = a[:, 0].copy()
    for i in range(1, a.shape[1]):
        op(out, a[:, i], out=out)
    return out


def _sliding(op: np.ufunc, a: np.ndarray, k: int) -> np.ndarray:
    """``op`` over every window of ``k`` consecutive elements (length ``len(a) - k + 1``), k passes."""
    n = max(a.size - k + 1, 0)
    out = a[:n].copy()
    for i in range(1, k):
        op(out, a[i : i + n], out=out)
    return out


def _row_percentile(srt: np.ndarray, cnt: np.ndarray, pct: float) -> np.ndarray:
    """``np.percentile(..., method="linear")`` of the first ``cnt[r]`` values of each sorted row ``srt[r]``."""
    pos = (np.maximum(cnt, 1) - 1) * (pct / 100.0)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, np.maximum(cnt - 1, 0))
    r = np.arange(srt.shape[0])
    v0, v1 = srt[r, i0], srt[r, i1]
    return v0 + (v1 - v0) * (pos - i0)


class BlockLevels:
    """Per-block unloaded / loaded levels of a (possibly still growing) load signal, by absolute block number."""

    def __init__(self, p: EventParams) -> None:
        self.p = p
        self.lo: dict[int, float] = {}
        self.hi: dict[int, float] = {}
        self.amp_max: dict[int, float] = {}  # running max of amplitude up to and including block j
        self.flat: dict[int, float] = {}  # share of block j's finite samples that lie in flat (dead-sensor) seconds
        self.rr_max: dict[int, float] = {}  # running max of the raw window range (reference of the flat test)

    def block_table(self) -> pd.DataFrame:
        j = sorted(self.lo)
        return pd.DataFrame({"block": j, "low": [self.lo[k] for k in j], "high": [self.hi[k] for k in j]})


    def update(self, x: np.ndarray, abs0: int, n_abs: int, final: bool) -> None:
        """Compute levels of every block whose window is complete (or all, when final); vectorised over blocks."""
        p = self.p
        B = p.block_n
        n_blocks_total = -(-n_abs // B)
        last = n_blocks_total - 1 if final else self.last_final_block(n_abs)
        first = max(abs0 // B + 1, 0) if abs0 > 0 else 0
        # a block's window [(j-1)B, (j+2)B) needs one more second before it for the flat test
        todo = np.array([j for j in range(first, last + 1)
                         if j not in self.lo and not ((j - 1) * B > 0 and (j - 1) * B - p.sec_n < abs0)], dtype=np.int64)
        if todo.size == 0:
            return
        n = x.size
        q = p.sub_n  # divides B, and abs0 is a multiple of B: sub-blocks are aligned to absolute sample 0
        K = max(p.sec_n // q, 1)
        nb = -(-n // B)  # blocks in the buffer
        # buffer laid out as blocks, with one NaN block before and two after (window edges)
        ext = np.full((nb + 3) * B, np.nan)
        ext[B : B + n] = x
        E = ext.reshape(nb + 3, B)
        # ---- flat seconds: range of every whole second, in steps of q samples ----
        sub = ext.reshape(-1, q)
        smx, smn = _columns_reduce(np.fmax, sub), _columns_reduce(np.fmin, sub)  # NaN only if all are
        sfin = np.isfinite(smx)
        smx, smn = np.where(sfin, smx, -np.inf), np.where(sfin, smn, np.inf)
        wr = _sliding(np.maximum, smx, K) - _sliding(np.minimum, smn, K)  # range of the second from sub-block k
        wr[_sliding(np.minimum, sfin.view(np.uint8), K) == 0] = np.inf  # (a second with a missing sub-block)
        pw = np.r_[np.full(K - 1, np.inf), wr, np.full(K - 1, np.inf)]
        rmin = _sliding(np.minimum, pw, K)[: sub.shape[0]].reshape(nb + 3, B // q)  # least range of a second around
        # ---- per window [(j-1)B, (j+2)B): raw range, flat mask, robust levels without flat / missing samples ----
        W = 3 * B
        r = todo - abs0 // B + 1  # row of block j in E
        bmx, bmn = smx.reshape(nb + 3, B // q).max(axis=1), smn.reshape(nb + 3, B // q).min(axis=1)
        raw_range = np.maximum(np.maximum(bmx[r - 1], bmx[r]), bmx[r + 1]) - np.minimum(np.minimum(bmn[r - 1], bmn[r]),
                                                                                        bmn[r + 1])
        raw_range = np.where(np.isfinite(raw_range), raw_range, 0.0)
        ref = np.maximum.accumulate(np.r_[self.rr_max.get(int(todo[0]) - 1, 0.0), raw_range])[1:]
        thr = p.flat_fraction * ref
        # flat and finite bookkeeping per sub-block (q samples), per window of 3 * B / q sub-blocks
        sub_fin = np.isfinite(sub).astype(np.float64) @ np.ones(q)  # finite samples per sub-block
        sfc = sub_fin.reshape(nb + 3, B // q)
        rw = np.concatenate([rmin[r - 1], rmin[r], rmin[r + 1]], axis=1)
        fw = rw <= thr[:, None]  # flat sub-blocks of each window
        fc = np.concatenate([sfc[r - 1], sfc[r], sfc[r + 1]], axis=1)
        nsb = B // q
        own_fin = fc[:, nsb : 2 * nsb].sum(axis=1)
        flat_share = np.where(own_fin > 0, (fc * fw)[:, nsb : 2 * nsb].sum(axis=1) / np.maximum(own_fin, 1), 0.0)
        cnt = (fc * ~fw).sum(axis=1).astype(np.int64)  # usable samples per window
        lo, hi = np.empty(todo.size), np.empty(todo.size)
        full = cnt == W
        if full.any():
            lo[full], hi[full] = self._full_window_levels(E, r[full], W)
        if (~full).any():  # windows with missing or flat samples (few): full sort without them
            rr = r[~full]
            win = np.concatenate([E[rr - 1], E[rr], E[rr + 1]], axis=1)
            win[np.repeat(fw[~full], q, axis=1)] = np.nan
            srt = np.sort(win, axis=1)  # NaN last
            lo[~full] = _row_percentile(srt, cnt[~full], p.low_pct)
            hi[~full] = _row_percentile(srt, cnt[~full], p.high_pct)
        few = cnt < B // 2
        lo[few] = np.nan
        hi[few] = np.nan
        amp = np.where(np.isfinite(hi - lo), hi - lo, 0.0)
        amax = np.maximum.accumulate(np.r_[self.amp_max.get(int(todo[0]) - 1, 0.0), amp])[1:]
        for k, j in enumerate(todo.tolist()):  # bookkeeping per block (a few hundred per hour)
            self.lo[j], self.hi[j] = float(lo[k]), float(hi[k])
            self.amp_max[j] = float(amax[k])
            self.rr_max[j] = float(ref[k])
            self.flat[j] = float(flat_share[k])

    def _full_window_levels(self, E: np.ndarray, r: np.ndarray, W: int) -> tuple[np.ndarray, np.ndarray]:
        """Low / high percentiles of windows of three complete blocks (rows r-1, r, r+1 of ``E``), exactly as
        ``np.percentile`` but from partial sorts: a window's k-th smallest value is among the k smallest of each
        of its blocks, so each block is partitioned once and only those candidates are merged per window."""
        p = self.p
        B = E.shape[1]
        blocks = np.unique(np.r_[r - 1, r, r + 1])
        pos_lo, pos_hi = (W - 1) * p.low_pct / 100.0, (W - 1) * p.high_pct / 100.0
        i_lo, i_hi = int(np.floor(pos_lo)), int(np.floor(pos_hi))
        k_lo = min(i_lo + 2, B)  # ranks i_lo, i_lo + 1 from the bottom
        k_hi = min(W - i_hi, B)  # ranks i_hi, i_hi + 1 counted from the top
        part = np.partition(E[blocks], sorted({k_lo - 1, B - k_hi}), axis=1)
        small = np.full((E.shape[0], k_lo), np.nan)
        large = np.full((E.shape[0], k_hi), np.nan)
        small[blocks], large[blocks] = part[:, :k_lo], part[:, B - k_hi :]
        cand_lo = np.concatenate([small[r - 1], small[r], small[r + 1]], axis=1)
        cand_hi = np.concatenate([large[r - 1], large[r], large[r + 1]], axis=1)
        off = W - cand_hi.shape[1]  # window rank of cand_hi's smallest element
        lo_k = sorted({i_lo, min(i_lo + 1, W - 1)})
        hi_k = sorted({i_hi - off, min(i_hi + 1, W - 1) - off})
        a = np.partition(cand_lo, lo_k, axis=1)
        b = np.partition(cand_hi, hi_k, axis=1)
        lo = a[:, i_lo] + (a[:, min(i_lo + 1, W - 1)] - a[:, i_lo]) * (pos_lo - i_lo)
        hi = b[:, i_hi - off] + (b[:, min(i_hi + 1, W - 1) - off] - b[:, i_hi - off]) * (pos_hi - i_hi)
        return lo, hi

    def last_final_block(self, n_abs: int) -> int:
        """Last block whose level cannot change any more (its window, one second for the flat test and room
        for gap filling have arrived)."""
        return (n_abs - self.p.max_gap_n - self.p.sec_n - 1) // self.p.block_n - 2

    def _capable_blocks(self, lo: np.ndarray, hi: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """Gait-capable flags (step 2) of blocks with levels ``lo``/``hi`` and reference amplitude ``ref``."""
        amp = hi - lo
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(amp) & (amp > 0)
            ref = np.where(np.isfinite(ref), ref, amp)
            ok &= ~(amp < self.p.min_relative_amplitude * ref)
            if self.p.zero_based:
                ok &= (lo <= self.p.max_unloaded_fraction * hi) & (hi > 0)
        return ok


    def per_sample(self, s0: int, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Unloaded level, amplitude and gait-capable flag of every sample in absolute ``[s0, horizon)``: levels
        interpolated linearly between block centres, the flag of the sample's block (None: no block has levels)."""
        B = self.p.block_n
        blocks = np.arange(max(s0 // B - 1, 0), (horizon - 1) // B + 2)
        have = np.array([j in self.lo for j in blocks])
        blocks = blocks[have]
        if blocks.size == 0:
            return None
        centres = blocks * B + (B - 1) / 2.0
        lo_b = np.array([self.lo[j] for j in blocks])
        hi_b = np.array([self.hi[j] for j in blocks])
        last_final = max(self.lo)
        ref_b = np.array([self.amp_max.get(min(j + 1, last_final), self.amp_max.get(j, np.nan)) for j in blocks.tolist()])
        cap_b = self._capable_blocks(lo_b, hi_b, ref_b)
        ok_b = np.isfinite(lo_b) & np.isfinite(hi_b)
        # (the full-length temporaries below are deleted as soon as they are used: a lower peak keeps the
        # allocator from mapping and page-faulting fresh memory on every call)
        pos_f = np.arange(s0, horizon, dtype=np.float64)
        if ok_b.any():
            lo_s = np.interp(pos_f, centres[ok_b], lo_b[ok_b])
            amp_s = np.interp(pos_f, centres[ok_b], hi_b[ok_b])
            amp_s -= lo_s
        else:
            lo_s, amp_s = np.full(pos_f.size, np.nan), np.full(pos_f.size, np.nan)
        del pos_f
        # gait-capable flag per sample, from the per-block flags
        b0 = s0 // B
        cap_blk = np.zeros((horizon - 1) // B - b0 + 1, dtype=bool)
        sel = (blocks >= b0) & (blocks - b0 < cap_blk.size)
        cap_blk[blocks[sel] - b0] = cap_b[sel]
        cap_s = np.repeat(cap_blk, B)[s0 - b0 * B : horizon - b0 * B]
        return lo_s, amp_s, cap_s
