"""A deterministic, seeded synthetic e-commerce behavior log: seqbert's built-in default data.

The generative story (every random draw comes from one ``numpy.random.default_rng(seed)``):

1. **Catalog.** ``num_items`` items are split over ``num_categories`` categories (uneven sizes).
   Inside each category, item popularity is Zipf-like (weight ``rank ** -zipf_exponent``), and each
   category has a lognormal price level around which its items' prices scatter (lognormal again).
   Each item has a conversion "appeal" multiplier, and a ``consumable_fraction`` of items are
   consumables that get bought again. Each item also has ``num_successors`` fixed *related* items
   in its own category (a random item-to-item successor graph with decaying weights): this is the
   sequential structure a sequence model has to learn.
2. **Users.** Each user has 1-3 category interests with random weights, a heavy-tailed number of
   sessions (gamma-Poisson) and a purchase propensity multiplier. Before each session after the
   first, with probability ``drift_rate`` one interest is replaced by a new category, so interests
   drift over a user's life.
3. **Sessions.** A session picks one of the user's current interests as its category and runs a
   browsing chain of geometric length (mean ``mean_session_length`` steps). The first step is a
   popularity draw from the session category; each later step is, with probability
   ``transition_prob``, a related item of the current one (the successor graph), with probability
   ``revisit_prob`` a re-view of an item seen earlier in the session, with probability
   ``explore_prob`` a draw from global popularity, and otherwise a popularity draw from the
   session category.
4. **Funnel.** Each browsing step is a ``view`` (or a ``click`` with probability ``click_rate``).
   After it, the user may ``fav`` the item (``fav_rate``) and may ``cart`` it (``cart_rate`` times
   the item's appeal and the user's propensity). At the end of the session a checkout ``purchase``
   happens for each carted item with probability ``purchase_given_cart``. A purchased consumable is
   re-bought directly ("buy again", a purchase with no view in that session) in a later session of
   the same user with probability ``repurchase_prob``, and so on in a chain.
5. **Time.** Within a session, gaps are seconds to minutes (lognormal, by event type; cart/fav come
   seconds after their view). Sessions are separated by lognormal gaps of hours to days, squeezed
   if a user's timeline would not fit, and each user's timeline is placed at a random offset so
   that every timestamp lies strictly inside ``(start_timestamp, start_timestamp + duration)``.
   Timestamps strictly increase within a user.

Invariants the tests rely on: every ``cart`` follows a view/click of the same item in the same
session; every ``purchase`` follows an earlier view/click of the same item by the same user (a
repeat purchase follows an earlier purchase, which itself followed a view/click).
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from .schema import EVENT_TYPES, canonical_schema


logger = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("user_id", "item_id", "event_type", "timestamp", "category", "price", "session_id")
"""Columns of a generated table (in canonical schema order)."""

_CATEGORY_NAMES: tuple[str, ...] = (
    "electronics", "books", "fashion", "home", "beauty", "sports", "toys", "grocery", "garden", "automotive",
    "health", "music", "movies", "pets", "office", "jewelry", "shoes", "baby", "tools", "games",
)  # fmt: skip

_VIEW, _CLICK, _CART, _FAV, _PURCHASE = (EVENT_TYPES.index(e) for e in ("view", "click", "cart", "fav", "purchase"))


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the synthetic behavior-log generator (see the module docstring for the story)."""

    num_users: int = 2000
    """int: number of users (each has at least one session)."""
    num_items: int = 1000
    """int: catalog size; must be >= ``num_categories``."""
    num_categories: int = 20
    """int: number of item categories."""
    mean_sessions_per_user: float = 6.0
    """float: mean number of sessions per user (>= 1; heavy-tailed across users)."""
    mean_session_length: float = 8.0
    """float: mean number of browsing steps (view/click) per session (geometric, >= 1)."""
    duration_days: float = 60.0
    """float: length of the logged period in days."""
    start_timestamp: int = 1_700_000_000
    """int: unix seconds at which the logged period starts."""
    seed: int = 0
    """int: seed of the single ``numpy.random.default_rng`` behind every draw."""

    # Catalog.
    zipf_exponent: float = 1.1
    """float: within-category popularity weight of the rank-r item is ``r ** -zipf_exponent``."""
    price_sigma: float = 0.5
    """float: lognormal sigma of item prices around their category's price level."""
    num_successors: int = 3
    """int: number of related items (successor-graph out-degree) per item."""
    successor_decay: float = 0.5
    """float: the k-th related item has weight ``successor_decay ** k`` (k = 0, 1, ...)."""
    consumable_fraction: float = 0.1
    """float: fraction of items that are consumables (bought again in later sessions)."""

    # Users and sessions.
    activity_shape: float = 1.5
    """float: gamma shape of user activity; smaller means a heavier tail of very active users."""
    max_sessions_per_user: int = 100
    """int: cap on sessions per user."""
    max_session_length: int = 100
    """int: cap on browsing steps per session."""
    drift_rate: float = 0.15
    """float: probability, before each session after the first, that one user interest is replaced."""

    # Browsing chain (the remaining probability is a popularity draw from the session category).
    transition_prob: float = 0.6
    """float: probability that the next step is a related item (successor) of the current one."""
    revisit_prob: float = 0.05
    """float: probability that the next step re-views an item seen earlier in the session."""
    explore_prob: float = 0.05
    """float: probability that the next step is drawn from global (all-category) popularity."""

    # Funnel.
    click_rate: float = 0.12
    """float: probability that a browsing step is logged as ``click`` instead of ``view``."""
    fav_rate: float = 0.02
    """float: probability of a ``fav`` after a browsing step."""
    cart_rate: float = 0.07
    """float: mean probability of a ``cart`` after a browsing step (scaled by item appeal and user propensity)."""
    purchase_given_cart: float = 0.33
    """float: probability that a carted item is purchased at the session's checkout."""
    repurchase_prob: float = 0.5
    """float: probability that a purchased consumable is bought again in a later session."""
    repurchase_interval: float = 2.0
    """float: mean number of sessions until a consumable is bought again (geometric)."""
    propensity_sigma: float = 0.6
    """float: lognormal sigma of per-user purchase propensity (mean 1)."""
    appeal_sigma: float = 0.5
    """float: lognormal sigma of per-item conversion appeal (mean 1)."""

    # Time.
    session_gap_hours: float = 18.0
    """float: median gap between consecutive sessions of a user, in hours (lognormal)."""
    step_gap_seconds: float = 25.0
    """float: median gap before a browsing step within a session, in seconds (lognormal)."""

    def __post_init__(self) -> None:
        if self.num_users < 1 or self.num_categories < 1:
            raise ValueError(f"num_users ({self.num_users}) and num_categories ({self.num_categories}) must be >= 1")
        if self.num_items < self.num_categories:
            raise ValueError(f"num_items ({self.num_items}) must be >= num_categories ({self.num_categories})")
        if self.mean_sessions_per_user < 1 or self.mean_session_length < 1:
            raise ValueError(
                f"mean_sessions_per_user ({self.mean_sessions_per_user}) and mean_session_length "
                f"({self.mean_session_length}) must be >= 1"
            )
        if self.duration_days <= 0:
            raise ValueError(f"duration_days must be > 0, got {self.duration_days}")
        if self.num_successors < 1:
            raise ValueError(f"num_successors must be >= 1, got {self.num_successors}")
        if self.transition_prob + self.revisit_prob + self.explore_prob > 1:
            raise ValueError(
                "transition_prob + revisit_prob + explore_prob must be <= 1, got "
                f"{self.transition_prob} + {self.revisit_prob} + {self.explore_prob}"
            )
        for name in (
            "drift_rate", "transition_prob", "revisit_prob", "explore_prob", "click_rate", "fav_rate",
            "cart_rate", "purchase_given_cart", "repurchase_prob", "consumable_fraction",
        ):  # fmt: skip
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.repurchase_interval < 1:
            raise ValueError(f"repurchase_interval must be >= 1, got {self.repurchase_interval}")


@dataclass(frozen=True)
class _Catalog:
    """Internal item arrays; internal item ids are sorted by category, then by popularity rank."""

    category: np.ndarray  # (I,) category of each item
    cat_start: np.ndarray  # (C + 1,) first internal item of each category
    cat_cum: np.ndarray  # (I,) category index + within-category cumulative popularity (last of c is c + 1)
    global_cum: np.ndarray  # (I,) cumulative global popularity (last is 1)
    category_weight: np.ndarray  # (C,) probability of a category being chosen as an interest
    successors: np.ndarray  # (I, K) related items
    successor_cum: np.ndarray  # (K,) cumulative successor weights (last is 1)
    price: np.ndarray  # (I,) float64
    appeal: np.ndarray  # (I,) conversion multiplier, mean 1
    consumable: np.ndarray  # (I,) bool
    external_id: np.ndarray  # (I,) number used in the item_id string

    def draw_in_category(self, u: np.ndarray, categories: np.ndarray) -> np.ndarray:
        """Popularity-weighted items of the given categories, from uniforms ``u`` in [0, 1)."""
        idx = np.searchsorted(self.cat_cum, categories + np.minimum(u, 1.0 - 1e-9), side="right")
        return np.clip(idx, self.cat_start[categories], self.cat_start[categories + 1] - 1)

    def draw_global(self, u: np.ndarray) -> np.ndarray:
        """Globally popularity-weighted items, from uniforms ``u`` in [0, 1)."""
        return np.minimum(np.searchsorted(self.global_cum, u, side="right"), len(self.global_cum) - 1)


def _build_catalog(cfg: SyntheticConfig, rng: np.random.Generator) -> _Catalog:
    n_items, n_cats = cfg.num_items, cfg.num_categories
    base = 2 if n_items >= 2 * n_cats else 1
    size_weight = rng.lognormal(0.0, 0.5, n_cats)
    sizes = base + rng.multinomial(n_items - base * n_cats, size_weight / size_weight.sum())
    cat_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    category = np.repeat(np.arange(n_cats, dtype=np.int64), sizes)
    rank = np.arange(n_items) - cat_start[category] + 1  # 1-based popularity rank inside the category

    pop = rank.astype(np.float64) ** -cfg.zipf_exponent
    share = pop / np.bincount(category, weights=pop, minlength=n_cats)[category]
    cum_within = np.cumsum(share) - np.concatenate([[0.0], np.cumsum(share)])[cat_start[category]]
    cat_cum = category + cum_within
    cat_cum[cat_start[1:] - 1] = np.arange(1, n_cats + 1)  # exact category boundaries

    category_weight = sizes * rng.lognormal(0.0, 0.3, n_cats)
    category_weight = category_weight / category_weight.sum()
    global_w = share * category_weight[category]
    global_cum = np.cumsum(global_w) / global_w.sum()
    global_cum[-1] = 1.0

    # Successor graph: K distinct (where possible) other items of the same category, uniform.
    k = cfg.num_successors
    n_in_cat = sizes[category]
    room = np.maximum(n_in_cat - 1, 1)
    offsets = 1 + (rng.random((n_items, k)) * room[:, None]).astype(np.int64)
    for j in range(1, k):
        for _ in range(8):  # resample duplicates a few times; leftovers are harmless
            dup = (offsets[:, [j]] == offsets[:, :j]).any(axis=1) & (n_in_cat - 1 > j)
            if not dup.any():
                break
            offsets[dup, j] = 1 + (rng.random(int(dup.sum())) * room[dup]).astype(np.int64)
    pos = (rank - 1)[:, None]
    successors = cat_start[category][:, None] + (pos + offsets) % n_in_cat[:, None]
    successor_w = cfg.successor_decay ** np.arange(k, dtype=np.float64)
    successor_cum = np.cumsum(successor_w) / successor_w.sum()
    successor_cum[-1] = 1.0

    level = rng.lognormal(np.log(25.0), 0.8, n_cats)
    price = np.round(np.maximum(level[category] * rng.lognormal(0.0, cfg.price_sigma, n_items), 0.5), 2)
    appeal = rng.lognormal(-0.5 * cfg.appeal_sigma**2, cfg.appeal_sigma, n_items)
    consumable = rng.random(n_items) < cfg.consumable_fraction
    external_id = rng.permutation(n_items)
    return _Catalog(
        category, cat_start, cat_cum, global_cum, category_weight, successors.astype(np.int64),
        successor_cum, price, appeal, consumable, external_id,
    )  # fmt: skip


def _session_categories(
    cfg: SyntheticConfig, rng: np.random.Generator, cat: _Catalog, n_sessions: np.ndarray
) -> np.ndarray:
    """Category of every session, flattened in (user, session ordinal) order, with interest drift."""
    n_users, n_cats = cfg.num_users, cfg.num_categories
    cw_cum = np.cumsum(cat.category_weight)
    cw_cum[-1] = 1.0

    def draw_cats(size: int | tuple[int, ...]) -> np.ndarray:
        return np.minimum(np.searchsorted(cw_cum, rng.random(size), side="right"), n_cats - 1)

    n_interests = rng.choice(np.array([1, 2, 3]), size=n_users, p=[0.35, 0.4, 0.25])
    interests = draw_cats((n_users, 3))
    weights = rng.gamma(1.0, 1.0, (n_users, 3)) * (np.arange(3)[None, :] < n_interests[:, None])
    weights_cum = np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True)
    rows = np.arange(n_users)
    max_s = int(n_sessions.max())
    out = np.empty((n_users, max_s), dtype=np.int64)
    for k in range(max_s):
        if k > 0:
            drift = rng.random(n_users) < cfg.drift_rate
            slot = np.minimum((rng.random(n_users) * n_interests).astype(np.int64), n_interests - 1)
            new = draw_cats(n_users)
            interests[rows[drift], slot[drift]] = new[drift]
        slot = np.minimum((rng.random(n_users)[:, None] > weights_cum).sum(axis=1), n_interests - 1)
        out[:, k] = interests[rows, slot]
    return out[np.arange(max_s)[None, :] < n_sessions[:, None]]


def _browse(
    cfg: SyntheticConfig, rng: np.random.Generator, cat: _Catalog, sess_cat: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """Item of every browsing step, flattened in (session, step) order; vectorised over sessions."""
    n_sess = len(lengths)
    order = np.argsort(-lengths, kind="stable")  # longest first: active sessions are a prefix
    ls, cs = lengths[order], sess_cat[order]
    max_len = int(ls[0])
    n_active = np.searchsorted(-ls, -np.arange(max_len), side="right")  # sessions with length > t
    steps = np.full((n_sess, max_len), -1, dtype=np.int64)
    steps[:, 0] = cat.draw_in_category(rng.random(n_sess), cs)
    p_succ = cfg.transition_prob
    p_rev = p_succ + cfg.revisit_prob
    p_exp = p_rev + cfg.explore_prob
    for t in range(1, max_len):
        a = int(n_active[t])
        cur = steps[:a, t - 1]
        mode = rng.random(a)
        u = rng.random((a, 2))
        which = np.minimum(np.searchsorted(cat.successor_cum, u[:, 0], side="right"), cfg.num_successors - 1)
        succ = cat.successors[cur, which]
        revisit = steps[np.arange(a), np.minimum((u[:, 1] * t).astype(np.int64), t - 1)]
        explore = cat.draw_global(u[:, 1])
        popular = cat.draw_in_category(u[:, 0], cs[:a])
        steps[:a, t] = np.select([mode < p_succ, mode < p_rev, mode < p_exp], [succ, revisit, explore], popular)
    unsorted = np.empty_like(steps)
    unsorted[order] = steps
    return unsorted[np.arange(max_len)[None, :] < lengths[:, None]]


def generate_events(config: SyntheticConfig | None = None) -> pa.Table:
    """Generate a synthetic behavior log in the canonical schema, sorted by (user_id, timestamp).

    The same config gives a byte-identical table. Columns: ``user_id``, ``item_id``,
    ``event_type`` (view, click, cart, fav, purchase), ``timestamp`` (int64 unix seconds),
    ``category``, ``price`` (float64), ``session_id``.
    """
    cfg = config if config is not None else SyntheticConfig()
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    cat = _build_catalog(cfg, rng)
    n_users = cfg.num_users

    # Users: activity and purchase propensity.
    extra = cfg.mean_sessions_per_user - 1.0
    activity = rng.gamma(cfg.activity_shape, extra / cfg.activity_shape, n_users) if extra > 0 else np.zeros(n_users)
    n_sessions = np.minimum(1 + rng.poisson(activity), cfg.max_sessions_per_user).astype(np.int64)
    propensity = rng.lognormal(-0.5 * cfg.propensity_sigma**2, cfg.propensity_sigma, n_users)

    # Sessions, in (user, ordinal) order: global session index g.
    n_sess = int(n_sessions.sum())
    sess_user = np.repeat(np.arange(n_users), n_sessions)
    user_first = np.concatenate([[0], np.cumsum(n_sessions)[:-1]])
    sess_k = np.arange(n_sess) - user_first[sess_user]
    sess_cat = _session_categories(cfg, rng, cat, n_sessions)
    lengths = np.minimum(rng.geometric(1.0 / cfg.mean_session_length, n_sess), cfg.max_session_length).astype(np.int64)

    # Browsing steps and their funnel events.
    step_item = _browse(cfg, rng, cat, sess_cat, lengths)
    n_steps = len(step_item)
    step_sess = np.repeat(np.arange(n_sess), lengths)
    step_t = np.arange(n_steps) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    step_user = sess_user[step_sess]
    browse_type = np.where(rng.random(n_steps) < cfg.click_rate, _CLICK, _VIEW)
    is_fav = rng.random(n_steps) < cfg.fav_rate
    p_cart = np.minimum(cfg.cart_rate * cat.appeal[step_item] * propensity[step_user], 0.9)
    is_cart = rng.random(n_steps) < p_cart
    cart_idx = np.flatnonzero(is_cart)
    # sqrt(propensity), normalised over carts (themselves propensity-weighted): mean p_buy ~ purchase_given_cart.
    buy_scale = np.sqrt(propensity[step_user[cart_idx]]) * np.exp(-0.375 * cfg.propensity_sigma**2)
    p_buy = np.minimum(cfg.purchase_given_cart * buy_scale, 0.95)
    buy_idx = cart_idx[rng.random(len(cart_idx)) < p_buy]

    # Repeat purchases of consumables, chained: (session, item) pairs strictly later each round.
    rep_sess, rep_item = [], []
    origin_sess, origin_item = step_sess[buy_idx], step_item[buy_idx]
    p_interval = 1.0 / cfg.repurchase_interval
    while len(origin_sess):
        keep = cat.consumable[origin_item]
        origin_sess, origin_item = origin_sess[keep], origin_item[keep]
        again = rng.random(len(origin_sess)) < cfg.repurchase_prob
        offset = rng.geometric(p_interval, len(origin_sess))
        target_k = sess_k[origin_sess] + offset
        ok = again & (target_k < n_sessions[sess_user[origin_sess]])
        origin_sess, origin_item = origin_sess[ok] + offset[ok], origin_item[ok]
        rep_sess.append(origin_sess)
        rep_item.append(origin_item)
    rep_sess_a = np.concatenate(rep_sess) if rep_sess else np.empty(0, np.int64)
    rep_item_a = np.concatenate(rep_item) if rep_item else np.empty(0, np.int64)

    # Assemble events with an in-session order key: step t -> 3t (browse), 3t+1 (fav), 3t+2 (cart);
    # checkout after the last step: carted purchases by step, then repeat purchases.
    fav_idx = np.flatnonzero(is_fav)
    max_len = int(lengths.max())
    ev_sess = np.concatenate([step_sess, step_sess[fav_idx], step_sess[cart_idx], step_sess[buy_idx], rep_sess_a])
    ev_item = np.concatenate([step_item, step_item[fav_idx], step_item[cart_idx], step_item[buy_idx], rep_item_a])
    ev_type = np.concatenate([
        browse_type,
        np.full(len(fav_idx), _FAV),
        np.full(len(cart_idx), _CART),
        np.full(len(buy_idx) + len(rep_sess_a), _PURCHASE),
    ])  # fmt: skip
    ev_key = np.concatenate([
        3 * step_t,
        3 * step_t[fav_idx] + 1,
        3 * step_t[cart_idx] + 2,
        3 * lengths[step_sess[buy_idx]] + step_t[buy_idx],
        3 * lengths[rep_sess_a] + max_len,
    ])  # fmt: skip
    perm = np.lexsort((ev_key, ev_sess))
    ev_sess, ev_item, ev_type = ev_sess[perm], ev_item[perm], ev_type[perm]
    n_ev = len(ev_sess)

    # Within-session gaps (seconds, >= 1) by event type; the first event of a session is at offset 0.
    follow_up = (ev_type == _CART) | (ev_type == _FAV)
    median = np.where(ev_type == _PURCHASE, 20.0, np.where(follow_up, 6.0, cfg.step_gap_seconds))
    sigma = np.where(follow_up, 0.6, 1.0)
    gaps = np.clip(np.rint(median * np.exp(sigma * rng.standard_normal(n_ev))), 1, 1800).astype(np.int64)
    sess_first_ev = np.searchsorted(ev_sess, np.arange(n_sess))
    gaps[sess_first_ev] = 0
    csum = np.cumsum(gaps)
    within = csum - csum[sess_first_ev][ev_sess]
    sess_dur = within[np.concatenate([sess_first_ev[1:], [n_ev]]) - 1]

    # Session starts: lognormal gaps of hours to days, squeezed per user to fit the period.
    duration_s = int(cfg.duration_days * 86400)
    avail = duration_s - 2  # timestamps in [start + 1, start + duration - 1]
    sess_gap = np.rint(cfg.session_gap_hours * 3600 * rng.lognormal(0.0, 1.1, n_sess))
    sess_gap = np.maximum(sess_gap, 1800).astype(np.int64)
    sess_gap[user_first] = 0
    dur_sum = np.bincount(sess_user, weights=sess_dur, minlength=n_users).astype(np.int64)
    gap_sum = np.bincount(sess_user, weights=sess_gap, minlength=n_users).astype(np.int64)
    over = dur_sum + gap_sum > avail
    if over.any():
        if (dur_sum + n_sessions - 1 > avail).any():
            raise ValueError(f"duration_days={cfg.duration_days} is too short for the generated sessions")
        factor = np.ones(n_users)
        factor[over] = (avail - dur_sum[over]) / gap_sum[over]
        squeezed = np.maximum(np.floor(sess_gap * factor[sess_user]), 1).astype(np.int64)
        sess_gap = np.where(over[sess_user] & (sess_k > 0), squeezed, sess_gap)
        gap_sum = np.bincount(sess_user, weights=sess_gap, minlength=n_users).astype(np.int64)
        still = dur_sum + gap_sum > avail  # rounding up to 1 s can overshoot: fall back to 1 s gaps
        if still.any():
            sess_gap = np.where(still[sess_user] & (sess_k > 0), 1, sess_gap)
            gap_sum = np.bincount(sess_user, weights=sess_gap, minlength=n_users).astype(np.int64)
    span = dur_sum + gap_sum
    inc = sess_gap + np.concatenate([[0], sess_dur[:-1]]) * (sess_k > 0)
    cinc = np.cumsum(inc)
    sess_rel = cinc - cinc[user_first][sess_user]
    user_offset = (rng.random(n_users) * (avail - span + 1)).astype(np.int64)
    sess_start = cfg.start_timestamp + 1 + user_offset[sess_user] + sess_rel
    timestamp = sess_start[ev_sess] + within

    # Strings through small dictionaries + take.
    ev_user = sess_user[ev_sess]
    uw, iw, sw = (max(width, len(str(n - 1))) for width, n in ((6, n_users), (5, cfg.num_items), (7, n_sess)))
    user_names = pa.array([f"u{i:0{uw}d}" for i in range(n_users)], pa.string())
    item_names = pa.array([f"i{e:0{iw}d}" for e in cat.external_id.tolist()], pa.string())
    sess_names = pa.array([f"s{g:0{sw}d}" for g in range(n_sess)], pa.string())
    cat_names = pa.array([_category_name(c) for c in range(cfg.num_categories)], pa.string())
    type_names = pa.array(list(EVENT_TYPES), pa.string())
    table = pa.Table.from_arrays(
        [
            user_names.take(pa.array(ev_user)),
            item_names.take(pa.array(ev_item)),
            type_names.take(pa.array(ev_type)),
            pa.array(timestamp, pa.int64()),
            cat_names.take(pa.array(cat.category[ev_item])),
            pa.array(cat.price[ev_item], pa.float64()),
            sess_names.take(pa.array(ev_sess)),
        ],
        schema=canonical_schema(COLUMNS),
    )
    logger.info(
        "generated %d synthetic events (%d users, %d sessions, %d items) in %.2fs",
        n_ev, n_users, n_sess, cfg.num_items, time.perf_counter() - t0,
    )  # fmt: skip
    return table


def _category_name(c: int) -> str:
    base = _CATEGORY_NAMES[c % len(_CATEGORY_NAMES)]
    return base if c < len(_CATEGORY_NAMES) else f"{base}_{c // len(_CATEGORY_NAMES)}"


_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".parquet", ".jsonl", ".jsonl.gz")


def write_events(table: pa.Table, path: str | Path) -> Path:
    """Write an event table; the format follows the suffix (.csv, .csv.gz, .tsv, .parquet, .jsonl, .jsonl.gz)."""
    path = Path(path)
    name = path.name.lower()
    suffix = next((s for s in sorted(_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)
    if suffix is None:
        raise ValueError(f"unsupported suffix for {path}; use one of {', '.join(_SUFFIXES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif suffix in (".csv", ".csv.gz", ".tsv"):
        import pyarrow.csv as pacsv

        options = pacsv.WriteOptions(delimiter="\t" if suffix == ".tsv" else ",")
        if suffix == ".csv.gz":
            with gzip.open(path, "wb", compresslevel=6) as sink:
                pacsv.write_csv(table, sink, write_options=options)
        else:
            pacsv.write_csv(table, path, write_options=options)
    else:
        with gzip.open(path, "wb", compresslevel=6) if suffix == ".jsonl.gz" else open(path, "wb") as sink:
            for batch in table.to_batches(max_chunksize=131_072):
                lines = _json_lines(batch)
                if lines:
                    sink.write(("\n".join(lines) + "\n").encode("utf-8"))
    logger.info("wrote %d events to %s", table.num_rows, path)
    return path


def _json_values(array: pa.Array) -> pa.Array:
    """One JSON literal per value (as an Arrow string array), vectorised for the common column types."""
    import pyarrow.compute as pc

    t = array.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        encoded = array.dictionary_encode()
        literals = pa.array([json.dumps(v, ensure_ascii=False) for v in encoded.dictionary.to_pylist()], pa.string())
        out = literals.take(encoded.indices)
    elif pa.types.is_integer(t) or pa.types.is_boolean(t):
        out = pc.cast(array, pa.string())
    elif pa.types.is_floating(t):
        finite = pc.is_finite(array)
        text = pc.cast(array, pa.string())  # shortest round-trip repr
        integral = pc.match_substring_regex(text, r"^-?[0-9]+$")
        text = pc.if_else(integral, pc.binary_join_element_wise(text, ".0", ""), text)
        out = pc.if_else(finite, text, pa.scalar(None, pa.string()))
    else:
        out = pa.array([json.dumps(v, default=str) for v in array.to_pylist()], pa.string())
    return pc.fill_null(out, "null")


def _json_lines(batch: pa.RecordBatch) -> list[str]:
    """The rows of a record batch as compact JSON objects, one string per row."""
    import pyarrow.compute as pc

    parts: list[pa.Array | str] = []
    for i, (field, column) in enumerate(zip(batch.schema, batch.columns)):
        parts.append(("{" if i == 0 else ",") + json.dumps(field.name) + ":")
        parts.append(_json_values(column))
    if not parts:
        return ["{}"] * batch.num_rows
    parts.append("}")
    return pc.binary_join_element_wise(*parts, "").to_pylist()


__all__ = ["COLUMNS", "SyntheticConfig", "generate_events", "write_events"]
