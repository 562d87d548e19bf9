"""``sparse-activation``: run each token through its top-k experts only.

A Mixture-of-Experts block written the obvious *dense* way runs every expert on every token and
masks the results with the routing weights (``sc.nn.MoE(formulation="dense")`` traces to it)::

    dense = scatter(zeros[T, E], ids, weights, axis=-1)          # [T, E], zero off the top k
    out   = y_0(x) * dense[:, 0:1] + ... + y_{E-1}(x) * dense[:, E-1:E]

It also recognizes the per-expert "index the tokens routed to me" loop of Hugging Face models
(Mixtral, Qwen-MoE, DeepSeek), traced with ``sc.ops.nonzero`` (a data-dependent row count)::

    out = zeros[T, H]
    for e in range(E):
        tok, slot = sc.ops.nonzero(ids == e)                     # the (token, slot) pairs routed to e
        out = sc.ops.index_add(out, tok, y_e(x[tok]) * w[tok, slot, None])

The pass recognizes either form and replaces it with the dispatch form, which computes each expert
on its own tokens only (about ``k/E`` of the dense work)::

    order, offsets = sc.moe_dispatch(ids, num_experts=E)      # (token, slot) pairs sorted by expert
    xp = sc.moe_permute(x, order, top_k=k)                     # [T*k, H]
    h  = act(sc.grouped_matmul(xp, stack(W_gate), offsets)) * sc.grouped_matmul(xp, stack(W_up), offsets)
    out = sc.moe_combine(sc.grouped_matmul(h, stack(W_down), offsets), order, weights)

The expert computation is copied from the experts (it need not be SwiGLU, see below); every
per-expert weight becomes ``sc.stack`` of the E expert weights (``[E, N, K]``). The routing
(whatever computes ``weights`` and ``ids``) is left as it is; its ``ids`` and ``weights`` feed
the new chain, so any router works (softmax top-k with or without renormalization, DeepSeek-V3
sigmoid with group limits, score bias and ``routed_scaling_factor``, shared experts beside the
sum). The dense experts, masks and the ``[T, E]`` matrix (or the loop's ``sc.nonzero``, gathers
and ``sc.index_add`` chain) are erased when nothing else uses them.

Each expert linear becomes its own ``sc.grouped_matmul``; fusing the gate and up products into
one ``sc.moe_gated_grouped_matmul`` is the ``expert-fusion`` pass's job (next in the default
pipeline). Statistics: ``moe blocks rewritten``, ``experts sparsified`` (E per block).

What is recognized
------------------
*The sum.* A whole tree of ``sc.add`` (inner adds used only by the tree; any shape, any order)
whose leaves include, for one routing ``(ids, weights)``, exactly one term ``y_e * m_e`` (either
operand order) for each expert ``e = 0..E-1``. Other leaves (a shared expert, a bias, a zeros
start, the residual) stay: the leaves are summed left to right again, the block's combine in
the place of its first term. With ``E = 1`` the single product is the "sum". Terms of several
routings in one tree are rewritten routing by routing.

*The mask column* ``m_e`` ``[T, 1]``, the weight of expert ``e`` per token, in any of these forms:

- a column of a dense routing matrix ``D`` ``[T, E]``: ``D[:, e:e+1]`` (``sc.slice``; ``D``
  itself when ``E = 1``), ``D[:, [e]]`` (``sc.take``), ``D[:, e][:, None]`` or
  ``reshape(D[:, e], [T, 1])`` (``sc.squeeze`` of a slice, or ``sc.take`` with a scalar index,
  then ``sc.expand_dims`` or ``sc.reshape``); where ``D`` is
  - ``sc.scatter(Z, ids, weights, axis=-1)`` (or ``sc.scatter_add``) with ``Z`` all zeros
    (``sc.constant`` or ``sc.broadcast_to`` of one), or
  - ``sum(one_hot(ids, E) * weights[:, :, None], axis=1)`` (the one-hot possibly ``sc.cast``,
    the weights widened by ``sc.expand_dims`` or ``sc.reshape``, either operand order);
- per expert, ``where(ids == e, weights, 0).sum(-1, keepdims=True)`` or
  ``((ids == e).astype(w.dtype) * weights).sum(-1)`` (``keepdims`` or re-expanded as above;
  ``e`` a constant, either side of ``sc.equal``).

*The Hugging Face loop.* A chain ``acc_E = index_add(... index_add(base, tok_0, s_0) ...,
tok_{E-1}, s_{E-1})`` (``sc.index_add`` along axis 0, each inner link used only by the next; the
links in any expert order) with one link per expert ``e = 0..E-1``, where

- ``(tok_e, slot_e) = nonzero(c_e)`` (``sc.nonzero``) and ``c_e`` ``[T, k]`` is ``ids == e``
  (either side of ``sc.equal``, a constant ``e``), or the expert axis of ``one_hot(ids, E)``
  indexed at ``e`` after any transpose (``one_hot(ids, E).permute(2, 1, 0)[e]``, Mixtral, gives
  ``(slot, tok)``; ``.permute(2, 0, 1)[e]``, DeepSeek, gives ``(tok, slot)``), possibly transposed
  or cast (``sc.nonzero(c)`` then yields the (token, slot) pairs in some order, which the sum
  does not depend on);
- ``s_e = y_e * w_e`` (either operand order, used only by the link), ``w_e`` ``[n, 1]`` the
  weight of each routed pair: ``weights[tok, slot, None]`` or ``weights[tok, slot][:, None]``
  (``.unsqueeze(-1)``), i.e. ``sc.take`` along axis 0 of ``weights`` reshaped to ``[T*k]`` (then
  widened by ``sc.expand_dims``/``sc.reshape``) or to ``[T*k, 1]``, at ``tok * k + slot`` (as the
  tracer writes ``w[tok, slot]``);
- ``y_e`` is an expert as below on ``x[tok_e]`` in place of ``x``: ``sc.take`` of ``x`` ``[T, *]``
  along axis 0 by ``tok_e``, or Mixtral's ``x[None, tok_e].reshape(-1, H)``.

``base`` of all zeros gives the combine alone; any other base ``[T, H]`` gives ``base + combine``.
Unlike the dense forms, this loop adds each pair's weighted row even if a row repeated an expert;
``ids`` must still be ``sc.topk`` indices as below, which puts every id in ``[0, E)``: the loop
skips ids outside, ``sc.moe_dispatch`` would fail on them.

``ids`` must be the indices of an ``sc.topk`` over the last axis of a ``[T, E']`` tensor with
``E' <= E`` (so each token's ids are distinct and in range: this is what makes the dense
scatter/one-hot/compare masks equal to the combine's weighted sum) and ``k >= 1``; ``weights``
is ``[T, k]`` of the experts' dtype.

*The experts.* ``y_e`` is computed from values shared by all experts by row-local ops used by
nothing but that expert: "linear" ops ``sc.linear(h, W)`` (no bias), ``sc.matmul(h, W,
transpose_b=true)``, ``sc.matmul(h, transpose(W))`` (``x @ w.T``) or ``sc.matmul(h, B)`` (``B``
``[K, N]``: the stack is transposed), and any elementwise ops (``silu``, ``gelu``, ``relu``,
``mul``, casts, scalar constants...). So SwiGLU, plain 2-layer MLPs with any activation, a
single linear, or deeper chains. All experts must have the same structure and shapes; only the
linear weights may differ per expert (static ``[N, K]`` tensors; usually ``sc.param``). Inputs
``[T, *]`` (normally just ``x``) are permuted; other inputs must be per-expert-invariant and
row-broadcast (rank < 2 or one row), e.g. a scalar ``0.5``.

What is not recognized (left unchanged)
---------------------------------------
- A Hugging Face loop whose links differ from the forms above: an expert missing or twice, the
  tokens gathered with another index than the link's ``tok_e``, weights of another ``(tok,
  slot)`` pairing or routing, the product or a partial sum used elsewhere, a boolean-mask gather
  (``x[mask]`` cannot be traced: use ``sc.ops.nonzero``), or index_adds along another axis. Such
  a graph keeps its ``sc.nonzero``, which the CPU target does not lower (a ``LoweringError``
  naming the op and its line). Two blocks' loops adding into one accumulator chain are one chain
  of two routings: neither is rewritten.
- A sum missing an expert, with an expert twice, or with a mask from other ids/weights than the
  others (the result would differ); ``ids`` that are not ``sc.topk`` indices (a function input
  or a gather may repeat an expert in a row, where ``scatter`` keeps the last weight but the
  combine would add both); ``E' > E``.
- Per-expert biases (``sc.linear`` with ``b``), quantized expert weights, weights of symbolic
  shape, experts with non-elementwise steps (norms, softmax), inputs of rank other than 2
  (``sc.nn.MoE`` flattens ``[B, S, H]`` to tokens first), masks applied inside the expert,
  experts whose intermediate values (or whose masked terms) are also used elsewhere (the dense
  work would stay), and ops inside regions (``sc.fused``: run the pass before fusion).

Exactness: for finite values the rewrite computes the same function under the reference
interpreter up to fp32 summation order (the combine adds the k weighted rows in slot order, the
dense sum adds all E products in expert order and the other leaves may be re-associated; with
k <= 2 and no other leaves the order is the same). The loop adds each token's k rows in the
loop's expert order, rounding to the accumulator's dtype after each (f16/bf16 round k times, the
combine once). The dense sum also multiplies the experts a token does not use by 0.0: where such
an expert's output is inf or NaN, the dense form gives NaN and the sparse form a finite value
(likewise an inf/NaN routing weight in the one-hot and compare-multiply masks, which multiply
every weight by 0 or 1); the loop, like the sparse form, computes only the routed rows.

The stacked weights: ``sc.stack`` of the per-expert weights is computed from params only;
evaluated at run time it would copy every expert weight on every call. The default pipeline
runs ``fold-constants{fold-params=true}`` after this pass, which folds each stack into one
``[E, N, K]`` weight at compile time (``test_fold_params_folds_the_stacked_weights``).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from ..ir import Block, Builder, Operation, OpResult, TensorType, Value, dim_mul
from ..ir.attributes import format_attr
from .registry import Pass, Statistics, register_pass


# ---------------------------------------------------------------------------------------------
# small helpers over values

def _producer(v: Value) -> Operation | None:
    return v.op if isinstance(v, OpResult) else None


def _tensor(v: Value, rank: int | None = None) -> TensorType | None:
    t = v.type
    if not isinstance(t, TensorType) or (rank is not None and len(t.shape) != rank):
        return None
    return t


def _axes(op: Operation, rank: int) -> tuple[int, ...] | None:
    """The op's ``axes`` attribute made non-negative (None when out of range)."""
    out = []
    for a in op.attrs.get("axes") or ():
        if not -rank <= a < rank:
            return None
        out.append(a % rank)
    return tuple(sorted(out))


def _axis(a: int, rank: int) -> int | None:
    return a % rank if -rank <= a < rank else None


def _const_array(v: Value) -> np.ndarray | None:
    """The elements of a constant (through ``sc.broadcast_to``: the broadcast source's)."""
    op = _producer(v)
    if op is None:
        return None
    if op.name == "sc.constant":
        return np.asarray(op.attrs["value"])
    if op.name == "sc.broadcast_to":
        return _const_array(op.operands[0])
    return None


def _is_zeros(v: Value) -> bool:
    a = _const_array(v)
    return a is not None and a.size > 0 and not np.any(a)


def _const_index(v: Value, shape: tuple) -> int | None:
    """The integer held by a constant of exactly ``shape`` (e.g. ``()`` or ``(1,)``), or None."""
    op = _producer(v)
    if op is None or op.name != "sc.constant":
        return None
    a = np.asarray(op.attrs["value"])
    if a.shape != shape or a.dtype.kind not in "iu":
        return None
    return int(a.reshape(-1)[0])


def _const_scalar(v: Value) -> int | None:
    """The integer held by a one-element constant of any rank (``e`` in ``ids == e``), or None."""
    t = _tensor(v)
    if t is None or not all(d == 1 for d in t.shape):
        return None
    return _const_index(v, tuple(t.shape))


def _same_leaf(a: Value, b: Value) -> bool:
    """The same value, or two constants with equal type and elements."""
    if a is b:
        return True
    pa, pb = _producer(a), _producer(b)
    if pa is None or pb is None or pa.name != "sc.constant" or pb.name != "sc.constant" or a.type != b.type:
        return False
    return np.array_equal(np.asarray(pa.attrs["value"]), np.asarray(pb.attrs["value"]))


def _attrs_key(op: Operation) -> tuple:
    return tuple(sorted((k, "none" if v is None else format_attr(v)) for k, v in op.attrs.items()))


def _linear_parts(op: Operation) -> tuple[Value, Value, bool] | None:
    """``(h, W, kn)`` for a row-wise product ``h @ W.T`` (``kn``: the op reads ``W.T`` ``[K, N]``
    as it is stored, so the stacked weights need a transpose), else None."""
    if op.name == "sc.linear":
        if len(op.operands) != 2:
            return None  # a bias per expert: not supported
        h, w = op.operands
        kn = False
    elif op.name == "sc.matmul":
        if op.attrs.get("transpose_a"):
            return None
        h, w = op.operands
        kn = not op.attrs.get("transpose_b")
        if kn:
            p = _producer(w)
            if p is not None and p.name == "sc.transpose" and tuple(p.attrs["perm"]) == (1, 0):
                w, kn = p.operands[0], False  # x @ W.T reads W itself
    else:
        return None
    th, tw = _tensor(h, 2), _tensor(w, 2)
    if th is None or tw is None or not tw.is_static or tw.dtype != th.dtype or not th.dtype.is_float:
        return None
    return h, w, kn


def _is_elementwise(op: Operation) -> bool:
    d = op.opdef
    return (d is not None and "elementwise" in d.traits and len(op.results) == 1 and not op.regions
            and all(isinstance(v.type, TensorType) for v in (*op.operands, *op.results)))


# ---------------------------------------------------------------------------------------------
# what the matcher finds

@dataclass(frozen=True)
class _Mask:
    """A mask column ``[T, 1]``: the routing weight of expert ``expert`` for every token."""
    ids: Value
    weights: Value
    expert: int
    width: int | None   # E of the dense [T, E] matrix it is a column of (None: a per-expert compare)


@dataclass
class _Term:
    """A leaf ``y * m`` of the sum: expert output ``y`` masked by column ``m``."""
    value: Value
    expert_out: Value
    mask: _Mask


@dataclass
class _LoopTerm:
    """A link ``index_add(acc, tok, value)`` of the Hugging Face loop: ``value = y * w``, expert
    output ``y`` on the ``rows`` tokens ``tok`` routed to ``mask.expert``."""
    value: Value
    expert_out: Value
    mask: _Mask
    tok: Value
    rows: object   # the data-dependent row count (sc.nonzero's symbolic dim)


@dataclass
class _Node:
    """One op of an expert, in operand-first order; ``refs`` name its operands as
    ``("node", i)``, ``("leaf", i)`` or, for a linear's weight, ``("weight", slot)``."""
    op: Operation
    kind: str            # "linear" or "elementwise"
    refs: tuple
    key: tuple           # what must be equal across experts


@dataclass
class _Expert:
    nodes: list[_Node]
    leaves: list[Value]                   # inputs shared by all experts (x, constants)
    weights: list[tuple[Value, bool]]     # per linear: (W, kn)


class _FunctionRewrite:
    """The pass over one function: find the dense sums and rewrite them."""

    def __init__(self, fn, stats: Statistics):
        self.block: Block = fn.body
        self.stats = stats
        self._pos: dict[int, int] | None = None
        self._failed: set[tuple] = set()   # groups whose experts did not match (by term ids)
        # the block list is rebuilt once at the end (inserting or erasing ops one by one costs a
        # scan of the block each): new ops go where the sum they replace was
        self.inserted: dict[int, tuple[Operation, list[Operation]]] = {}
        self.removed: dict[int, Operation] = {}

    # -- driver ----------------------------------------------------------------------------
    def run(self) -> None:
        for op in list(self.block.ops):
            if (op.parent is not self.block or op.name not in ("sc.add", "sc.mul", "sc.index_add")
                    or not op.result.uses):
                continue  # erased by an earlier rewrite, not a sum, or dead (left to dce)
            if op.name == "sc.index_add":
                if not self.inner_link(op):
                    self.rewrite_loop(op)
            elif op.name == "sc.add" and not self.inner_add(op):
                self.rewrite_sum(op, self.sum_leaves(op))
            elif op.name == "sc.mul" and not any(u.name == "sc.add" for u in op.result.users):
                self.rewrite_sum(op, [op.result])   # a single expert: the product is the sum
        if self.inserted or self.removed:
            ops = []
            for op in self.block.ops:
                if id(op) in self.inserted:
                    for new in self.inserted[id(op)][1]:
                        new.parent = self.block
                        ops.append(new)
                if id(op) not in self.removed:
                    ops.append(op)
            self.block.ops[:] = ops

    def position(self, op: Operation) -> int:
        if self._pos is None:
            self._pos = {id(o): i for i, o in enumerate(self.block.ops)}
        return self._pos[id(op)]

    def top_level(self, v: Value) -> Operation | None:
        op = _producer(v)
        return op if op is not None and op.parent is self.block else None

    def inner_add(self, op: Operation) -> bool:
        """Is ``op`` inside a bigger add tree (its only use an ``sc.add``)? Only whole trees are
        matched, so that every expert of a block is in view at once."""
        uses = op.result.uses
        return len(uses) == 1 and uses[0][0].name == "sc.add" and uses[0][0].parent is self.block

    def sum_leaves(self, root: Operation) -> list[Value]:
        """The leaves of the add tree at ``root``, left to right (inner adds used once)."""
        leaves: list[Value] = []
        stack = list(reversed(root.operands))
        while stack:
            v = stack.pop()
            p = self.top_level(v)
            if p is not None and p.name == "sc.add" and len(v.uses) == 1:
                stack.extend(reversed(p.operands))
            else:
                leaves.append(v)
        return leaves

    # -- the rewrite -----------------------------------------------------------------------
    def rewrite_sum(self, root: Operation, leaves: list[Value]) -> None:
        groups: dict[tuple, list[int]] = {}
        terms: list[_Term | None] = []
        for i, v in enumerate(leaves):
            t = self.term(v)
            terms.append(t)
            if t is not None:
                groups.setdefault((id(t.mask.ids), id(t.mask.weights)), []).append(i)
        plans = []
        for idx in groups.values():
            group = [terms[i] for i in idx]
            experts = self.plan(group, root)
            if experts is not None:
                plans.append((idx, group, experts))
        if not plans:
            return
        scratch = Block()   # the new ops, placed where ``root`` is at the end of the run
        b = Builder(scratch)
        combined: dict[int, Value] = {}     # leaf index of a group's first term -> its combine
        dropped: set[int] = set()
        for idx, group, experts in plans:
            by_expert = sorted(zip(group, experts), key=lambda te: te[0].mask.expert)
            mask = group[0].mask
            combined[idx[0]] = self.emit(b, root.loc, mask.ids, mask.weights, group[0].value.type.shape[0],
                                         [e for _, e in by_expert])
            dropped.update(idx)
        out = None
        for i, v in enumerate(leaves):
            if i in combined:
                v = combined[i]
            elif i in dropped:
                continue
            out = v if out is None else b.create("sc.add", [out, v], loc=root.loc).result
        if out.type != root.result.type:  # pragma: no cover - the same leaves broadcast as before
            for op in reversed(scratch.ops):
                op.drop_operands()
            return
        for _, group, _ in plans:
            self.stats["moe blocks rewritten"] += 1
            self.stats["experts sparsified"] += len(group)
        self.inserted[id(root)] = (root, list(scratch.ops))
        scratch.ops.clear()
        root.result.replace_all_uses_with(out)
        self.erase_dead(root)

    def erase_dead(self, op: Operation) -> None:
        """Detach ``op`` (unused) and every pure op that becomes unused through it (taken out of
        the block list at the end of the run)."""
        work = [op]
        while work:
            o = work.pop()
            if o.parent is not self.block or any(r.uses for r in o.results):
                continue
            if o is not op and (o.opdef is None or "pure" not in o.opdef.traits):
                continue
            producers = [p for p in (_producer(v) for v in o.operands) if p is not None]
            for inner in reversed(list(o.walk())):
                inner.drop_operands()
            o.parent = None
            self.removed[id(o)] = o
            work.extend(producers)

    # -- masks -----------------------------------------------------------------------------
    def term(self, v: Value) -> _Term | None:
        op = self.top_level(v)
        t = _tensor(v, 2)
        if op is None or op.name != "sc.mul" or t is None:
            return None
        a, b = op.operands
        for y, m in ((a, b), (b, a)):
            mask = self.mask_column(m)
            if mask is None or y.type != v.type or _tensor(m, 2) is None or m.type.shape != (t.shape[0], 1):
                continue
            ti, tw = mask.ids.type, mask.weights.type
            if ti.shape[0] != t.shape[0] or tw.dtype != t.dtype:
                continue
            return _Term(v, y, mask)
        return None

    def mask_column(self, m: Value) -> _Mask | None:
        """``m`` ``[T, 1]`` as a mask column (see the module docstring), or None."""
        op = self.top_level(m)
        if op is None or _tensor(m, 2) is None or m.type.shape[1] != 1:
            return None
        src = op.operands[0] if op.operands else None
        if op.name == "sc.slice" and _tensor(src, 2) is not None and _axis(op.attrs["axis"], 2) == 1:
            width = src.type.shape[1]
            if isinstance(width, int) and op.attrs["step"] is not None:
                picked = range(width)[op.attrs["start"]:op.attrs["stop"]:op.attrs["step"]]
                if len(picked) == 1:
                    return self.dense_column(src, picked[0])
        elif op.name == "sc.take" and _tensor(src, 2) is not None and _axis(op.attrs["axis"], 2) == 1:
            e = _const_index(op.operands[1], (1,))
            if e is not None:
                return self.dense_column(src, e)
        elif op.name in ("sc.expand_dims", "sc.reshape") and _tensor(src, 1) is not None:
            if op.name == "sc.reshape" or _axes(op, 2) == (1,):
                return self.mask_vector(src)
        elif op.name == "sc.sum" and op.attrs["keepdims"] and _tensor(src, 2) is not None and _axes(op, 2) == (1,):
            return self.selected_weight(src)
        # a single expert's [T, 1] routing matrix is its own column (the tracer drops d[:, 0:1])
        return self.dense_column(m, 0)

    def mask_vector(self, u: Value) -> _Mask | None:
        """``u`` ``[T]``: a mask column without its unit dim."""
        op = self.top_level(u)
        if op is None:
            return None
        src = op.operands[0] if op.operands else None
        if op.name == "sc.squeeze" and _tensor(src, 2) is not None and _axes(op, 2) == (1,):
            return self.mask_column(src)
        if op.name == "sc.take" and _tensor(src, 2) is not None and _axis(op.attrs["axis"], 2) == 1:
            e = _const_index(op.operands[1], ())
            return None if e is None else self.dense_column(src, e)
        if op.name == "sc.sum" and not op.attrs["keepdims"] and _tensor(src, 2) is not None and _axes(op, 2) == (1,):
            return self.selected_weight(src)
        return None

    def dense_column(self, d: Value, e: int) -> _Mask | None:
        """Column ``e`` of a dense routing matrix ``d`` ``[T, E]``."""
        width = d.type.shape[1]
        if not isinstance(width, int) or not 0 <= e < width:
            return None
        routing = self.dense_routing(d)
        return None if routing is None else _Mask(routing[0], routing[1], e, width)

    def dense_routing(self, d: Value) -> tuple[Value, Value] | None:
        """``(ids, weights)`` when ``d`` ``[T, E]`` holds ``weights[t, j]`` at ``[t, ids[t, j]]``, zeros
        elsewhere (given distinct ids per row, which the group check establishes)."""
        op = self.top_level(d)
        if op is None:
            return None
        if op.name in ("sc.scatter", "sc.scatter_add"):
            base, ids, w = op.operands
            if _axis(op.attrs["axis"], 2) == 1 and _is_zeros(base) and _tensor(ids, 2) is not None:
                return ids, w
            return None
        if (op.name == "sc.sum" and not op.attrs["keepdims"] and _tensor(op.operands[0], 3) is not None
                and _axes(op, 3) == (1,)):
            p = self.top_level(op.operands[0])
            if p is None or p.name != "sc.mul":
                return None
            a, b = p.operands
            for oh, wx in ((a, b), (b, a)):
                ids = self.one_hot_ids(oh, d.type.shape[1])
                w = self.widened(wx)
                if ids is not None and w is not None and ids.type.shape == w.type.shape and oh.type == p.result.type:
                    return ids, w
        return None

    def one_hot_ids(self, v: Value, depth: int) -> Value | None:
        op = self.top_level(v)
        if op is not None and op.name == "sc.cast":
            op = self.top_level(op.operands[0])
        if op is not None and op.name == "sc.one_hot" and op.attrs["depth"] == depth \
                and _tensor(op.operands[0], 2) is not None:
            return op.operands[0]
        return None

    def widened(self, v: Value) -> Value | None:
        """``w`` ``[T, k]`` when ``v`` is ``w[:, :, None]`` (expand_dims or reshape)."""
        op = self.top_level(v)
        if op is None or _tensor(v, 3) is None or v.type.shape[2] != 1:
            return None
        src = op.operands[0]
        if _tensor(src, 2) is None or v.type.shape[:2] != src.type.shape:
            return None
        if op.name == "sc.reshape" or (op.name == "sc.expand_dims" and _axes(op, 3) == (2,)):
            return src
        return None

    def selected_weight(self, p: Value) -> _Mask | None:
        """``p`` ``[T, k]`` = ``where(ids == e, weights, 0)`` or ``(ids == e) * weights``."""
        op = self.top_level(p)
        if op is None:
            return None
        if op.name == "sc.where":
            cond, w, zero = op.operands
            if w.type == p.type and _is_zeros(zero):
                return self.expert_compare(cond, w)
        elif op.name == "sc.mul":
            a, b = op.operands
            for c, w in ((a, b), (b, a)):
                cast = self.top_level(c)
                if (cast is not None and cast.name == "sc.cast" and w.type == p.type
                        and cast.operands[0].type.dtype.is_bool):
                    mask = self.expert_compare(cast.operands[0], w)
                    if mask is not None:
                        return mask
        return None

    def expert_compare(self, cond: Value, w: Value) -> _Mask | None:
        """``cond`` = ``ids == e`` (a constant ``e``, either side) with ``ids`` shaped like ``w``."""
        op = self.top_level(cond)
        if op is None or op.name != "sc.equal":
            return None
        a, b = op.operands
        for ids, c in ((a, b), (b, a)):
            tc = _tensor(c)
            e = _const_index(c, tuple(tc.shape)) if tc is not None and all(d == 1 for d in tc.shape) else None
            if e is not None and e >= 0 and _tensor(ids, 2) is not None and ids.type.shape == w.type.shape \
                    and cond.type.shape == ids.type.shape:
                return _Mask(ids, w, e, None)
        return None

    # -- the Hugging Face loop: index_add(..., tok_e, expert_e(x[tok_e]) * w[tok_e, slot_e]) ----
    def inner_link(self, op: Operation) -> bool:
        """Is ``op`` an inner link of an index_add chain (its only use the next link's base)?"""
        uses = op.result.uses
        return (len(uses) == 1 and uses[0][1] == 0 and uses[0][0].name == "sc.index_add"
                and uses[0][0].parent is self.block)

    def rewrite_loop(self, root: Operation) -> None:
        """Rewrite the chain of ``sc.index_add`` ending at ``root`` when every link adds one
        expert's weighted rows of one routing and the chain covers every expert once."""
        acc = _tensor(root.result, 2)
        if acc is None:
            return
        links = [root]
        while True:
            base = links[-1].operands[0]
            p = self.top_level(base)
            if p is None or p.name != "sc.index_add" or len(base.uses) != 1:
                break
            links.append(p)
        terms = [self.loop_term(link) for link in links]
        if any(t is None for t in terms):
            return
        if len({(id(t.mask.ids), id(t.mask.weights)) for t in terms}) != 1:
            return       # several routings in one chain
        if not self.routing_ok([t.mask for t in terms]):
            return
        ids, weights = terms[0].mask.ids, terms[0].mask.weights
        tokens = acc.shape[0]
        if ids.type.shape[0] != tokens:
            return
        experts = []
        for t in terms:
            ex = self.expert(t.expert_out, t.rows)
            ex = None if ex is None else self.gathered(ex, t, tokens)
            if ex is None:
                return
            experts.append(ex)
        if not self.same_structure(experts):
            return
        scratch = Block()   # the new ops, placed where ``root`` is at the end of the run
        b = Builder(scratch)
        by_expert = sorted(zip(terms, experts), key=lambda te: te[0].mask.expert)
        out = self.emit(b, root.loc, ids, weights, tokens, [e for _, e in by_expert])
        base = links[-1].operands[0]
        if not _is_zeros(base):     # index_add into a value: that value plus the experts' rows
            out = b.create("sc.add", [base, out], loc=root.loc).result
        if out.type != root.result.type:  # pragma: no cover - combine gives [T, H] like the chain
            for op in reversed(scratch.ops):
                op.drop_operands()
            return
        self.stats["moe blocks rewritten"] += 1
        self.stats["experts sparsified"] += len(terms)
        self.inserted[id(root)] = (root, list(scratch.ops))
        scratch.ops.clear()
        root.result.replace_all_uses_with(out)
        self.erase_dead(root)

    def loop_term(self, link: Operation) -> _LoopTerm | None:
        """``index_add(acc, tok, y * w, axis=0)`` with ``(tok, slot) = nonzero(<ids == e>)`` and
        ``w = weights[tok, slot]`` (a column ``[n, 1]``, either operand order)."""
        acc = _tensor(link.result, 2)
        if acc is None or _axis(link.attrs["axis"], 2) != 0:
            return None
        _, tok, src = link.operands
        routed = self.routed(tok)
        p = self.top_level(src)
        if routed is None or p is None or p.name != "sc.mul" or len(src.uses) != 1:
            return None
        ids, e, width, slot = routed
        a, b = p.operands
        for y, w in ((a, b), (b, a)):
            if y.type != src.type:
                continue
            weights = self.routed_weight(w, tok, slot, ids)
            if weights is not None and weights.type.dtype == acc.dtype:
                return _LoopTerm(src, y, _Mask(ids, weights, e, width), tok, tok.type.shape[0])
        return None

    def routed(self, tok: Value) -> tuple | None:
        """``(ids, e, width, slot)`` when ``tok`` is the token vector of ``nonzero(c)`` where ``c``
        ``[T, k]`` (or its transpose) is nonzero exactly where ``ids == e``; ``slot`` is the other
        vector."""
        nz = self.top_level(tok)
        if nz is None or nz.name != "sc.nonzero" or len(nz.results) != 2:
            return None
        found = self.indicator(nz.operands[0])
        if found is None:
            return None
        ids, e, width, labels = found
        if tok is not nz.results[labels.index("token")]:
            return None
        return ids, e, width, nz.results[labels.index("slot")]

    def indicator(self, c: Value) -> tuple | None:
        """``(ids, e, width, labels)`` when ``c`` (rank 2) is nonzero exactly where ``ids == e``:
        ``ids == e`` (either side), ``one_hot(ids, E)`` with the expert axis indexed at ``e``
        (``one_hot(ids, E).permute(2, 1, 0)[e]``), possibly transposed or cast; ``labels`` say
        which of ``c``'s axes is the token and which the slot."""
        op = self.top_level(c)
        if op is None or _tensor(c, 2) is None:
            return None
        if op.name == "sc.cast":     # a 0/1 indicator stays one under any cast
            return self.indicator(op.operands[0])
        if op.name == "sc.transpose" and tuple(op.attrs["perm"]) == (1, 0):
            found = self.indicator(op.operands[0])
            return None if found is None else (*found[:3], found[3][::-1])
        if op.name == "sc.equal":
            a, b = op.operands
            for ids, k in ((a, b), (b, a)):
                e = _const_scalar(k)
                if (e is not None and e >= 0 and _tensor(ids, 2) is not None and ids.type.dtype.is_int
                        and ids.type.shape == c.type.shape):
                    return ids, e, None, ("token", "slot")
            return None
        picked = self.picked(op)
        if picked is None:
            return None
        m, axis, e = picked
        oh = self.one_hot_axes(m)
        if oh is None or oh[2][axis] != "expert" or not 0 <= e < oh[1]:
            return None
        return oh[0], e, oh[1], tuple(lbl for j, lbl in enumerate(oh[2]) if j != axis)

    def picked(self, op: Operation) -> tuple | None:
        """``(m, axis, e)`` when ``op`` is ``m[..., e, ...]`` on ``axis`` of a rank-3 ``m``
        (``sc.squeeze`` of a one-element ``sc.slice`` or of a unit dim, or ``sc.take`` of a
        constant scalar index)."""
        src = op.operands[0] if op.operands else None
        if _tensor(src, 3) is None:
            return None
        if op.name == "sc.take":
            axis = _axis(op.attrs["axis"], 3)
            e = _const_index(op.operands[1], ())
            return None if axis is None or e is None else (src, axis, e)
        if op.name != "sc.squeeze" or len(op.attrs["axes"]) != 1:
            return None
        axis = _axes(op, 3)[0] if _axes(op, 3) else None
        if axis is None:
            return None
        s = self.top_level(src)
        if (s is not None and s.name == "sc.slice" and _tensor(s.operands[0], 3) is not None
                and _axis(s.attrs["axis"], 3) == axis and isinstance(s.operands[0].type.shape[axis], int)
                and s.attrs["step"] is not None):
            picked = range(s.operands[0].type.shape[axis])[s.attrs["start"]:s.attrs["stop"]:s.attrs["step"]]
            if len(picked) == 1:
                return s.operands[0], axis, picked[0]
        return src, axis, 0      # a unit dim squeezed away: index 0 of it

    def one_hot_axes(self, m: Value) -> tuple | None:
        """``(ids, depth, labels)`` when ``m`` (rank 3) is ``one_hot(ids, depth)``, possibly cast
        and transposed; ``labels`` name ``m``'s axes ("token", "slot", "expert")."""
        op = self.top_level(m)
        if op is None or _tensor(m, 3) is None:
            return None
        if op.name == "sc.cast":
            return self.one_hot_axes(op.operands[0])
        if op.name == "sc.transpose":
            found = self.one_hot_axes(op.operands[0])
            if found is None:
                return None
            return found[0], found[1], tuple(found[2][p % 3] for p in op.attrs["perm"])
        if op.name == "sc.one_hot" and _tensor(op.operands[0], 2) is not None and op.operands[0].type.dtype.is_int:
            return op.operands[0], op.attrs["depth"], ("token", "slot", "expert")
        return None

    def routed_weight(self, w: Value, tok: Value, slot: Value, ids: Value) -> Value | None:
        """``weights`` ``[T, k]`` (shaped like ``ids``) when ``w`` ``[n, 1]`` is ``weights[tok, slot]``
        as a column: ``take(flat, tok * k + slot)`` of ``weights`` flattened to ``[T*k]`` then
        widened (``[:, None]``, ``unsqueeze(-1)``), or flattened to ``[T*k, 1]`` (``w[tok, slot, None]``)."""
        if _tensor(w, 2) is None or w.type.shape != (tok.type.shape[0], 1):
            return None
        op = self.top_level(w)
        if op is None:
            return None
        if op.name in ("sc.expand_dims", "sc.reshape") and _tensor(op.operands[0], 1) is not None:
            if op.name == "sc.expand_dims" and _axes(op, 2) != (1,):
                return None
            op = self.top_level(op.operands[0])
            if op is None:
                return None
        if op.name != "sc.take":
            return None
        src, flat = op.operands
        if _tensor(src) is None or _axis(op.attrs["axis"], src.type.rank) != 0 or _tensor(flat, 1) is None:
            return None
        weights = self.flat_view_of(src, ids.type.shape)
        if weights is None or _tensor(weights, 2) is None:
            return None
        t, k = weights.type.shape
        if not isinstance(k, int) or src.type.shape[0] != dim_mul(t, k) or any(d != 1 for d in src.type.shape[1:]):
            return None
        return weights if self.flat_index(flat, tok, slot, k) else None

    def flat_view_of(self, v: Value, shape: tuple) -> Value | None:
        """The earliest value of ``shape`` that ``v`` is a reshape of (through ``sc.reshape``,
        ``sc.expand_dims`` and ``sc.squeeze``, which keep the row-major element order), or None."""
        found = None
        while True:
            if v.type.shape == shape:
                found = v
            op = self.top_level(v)
            if op is None or op.name not in ("sc.reshape", "sc.expand_dims", "sc.squeeze"):
                return found
            v = op.operands[0]

    def flat_index(self, f: Value, tok: Value, slot: Value, k: int) -> bool:
        """``f`` = ``tok * k + slot`` (either operand order; ``tok + slot`` when ``k == 1``)."""
        op = self.top_level(f)
        if op is None or op.name != "sc.add":
            return False
        a, b = op.operands
        return (self.is_slot(b, slot, k) and self.scaled(a, tok, k)) or \
            (self.is_slot(a, slot, k) and self.scaled(b, tok, k))

    def is_slot(self, v: Value, slot: Value, k: int) -> bool:
        """``v`` is ``slot``, or ``take(arange(k), slot)`` (the tracer's range check of a second
        index: the same values, or an IndexError)."""
        if v is slot:
            return True
        op = self.top_level(v)
        if op is None or op.name != "sc.take" or op.operands[1] is not slot or _axis(op.attrs["axis"], 1) != 0:
            return False
        table = _const_array(op.operands[0])
        return table is not None and table.shape == (k,) and np.array_equal(table, np.arange(k))

    def scaled(self, v: Value, tok: Value, k: int) -> bool:
        if v is tok:
            return k == 1
        op = self.top_level(v)
        if op is None or op.name != "sc.mul":
            return False
        a, b = op.operands
        return (a is tok and _const_scalar(b) == k) or (b is tok and _const_scalar(a) == k)

    def gathered(self, ex: _Expert, term: _LoopTerm, tokens) -> _Expert | None:
        """``ex`` (matched on the ``n`` routed rows) with each ``[n, *]`` input ``x[tok]`` replaced
        by ``x`` ``[T, *]``."""
        leaves = []
        for v in ex.leaves:
            t = _tensor(v)
            if t is not None and len(t.shape) == 2 and t.shape[0] == term.rows:
                v = self.gathered_rows(v, term.tok, tokens)
                if v is None:
                    return None
            leaves.append(v)
        return _Expert(ex.nodes, leaves, ex.weights)

    def gathered_rows(self, v: Value, tok: Value, tokens) -> Value | None:
        """``x`` ``[T, *]`` when ``v`` is ``x[tok]``: ``sc.take`` along axis 0, or Mixtral's
        ``x[None, tok].reshape(-1, H)`` (a take along axis ``a`` of ``x`` widened by ``a`` leading
        unit dims, those dims then dropped by ``sc.reshape``/``sc.squeeze``)."""
        op = self.top_level(v)
        if op is not None and op.name in ("sc.reshape", "sc.squeeze"):
            inner = op.operands[0].type.shape
            lead = len(inner) - len(v.type.shape)
            if lead > 0 and inner[lead:] == v.type.shape and all(d == 1 for d in inner[:lead]):
                op = self.top_level(op.operands[0])
        if op is None or op.name != "sc.take" or op.operands[1] is not tok:
            return None
        src = op.operands[0]
        a = _axis(op.attrs["axis"], len(src.type.shape)) if _tensor(src) is not None else None
        if a is None or any(d != 1 for d in src.type.shape[:a]):
            return None
        x = src
        if a > 0:
            p = self.top_level(src)
            if p is None or p.name not in ("sc.expand_dims", "sc.reshape"):
                return None
            x = p.operands[0]
            if x.type.shape != src.type.shape[a:]:
                return None
        if _tensor(x, 2) is None or x.type.shape[0] != tokens:
            return None
        return x

    # -- a group of terms: one MoE block -----------------------------------------------------
    def plan(self, group: list[_Term], root: Operation) -> list[_Expert] | None:
        """The experts of ``group`` (in the group's order) when the group is one complete MoE
        block that can be rewritten, else None."""
        if not self.routing_ok([t.mask for t in group]):
            return None
        if any(len(t.value.uses) != 1 for t in group if t.value is not root.result):
            return None      # a masked term used elsewhere keeps the dense expert alive
        key = tuple(id(t.value) for t in group)
        if key in self._failed:
            return None
        tokens = group[0].value.type.shape[0]
        experts = [self.expert(t.expert_out, tokens) for t in group]
        if any(e is None for e in experts) or not self.same_structure(experts):
            self._failed.add(key)
            return None
        return experts

    def routing_ok(self, masks: list[_Mask]) -> bool:
        """The masks (of one ``ids``/``weights``) cover experts ``0..E-1`` once each, and ``ids``
        are ``sc.topk`` (or ``sc.softmax_topk``) indices over ``E' <= E`` scores, ``weights``
        ``[T, k]`` like them."""
        n = len(masks)
        if sorted(m.expert for m in masks) != list(range(n)):
            return False     # an expert missing or twice
        if any(m.width not in (None, n) for m in masks):
            return False
        ids, weights = masks[0].ids, masks[0].weights
        top = self.top_level(ids)
        if (top is None or top.name not in ("sc.topk", "sc.softmax_topk") or ids is not top.results[1]
                or (top.name == "sc.topk" and _axis(top.attrs["axis"], 2) != 1)
                or _tensor(top.operands[0], 2) is None):
            return False     # ids must be distinct per row: top-k indices over the last axis
        if not isinstance(top.operands[0].type.shape[1], int) or top.operands[0].type.shape[1] > n:
            return False
        k = ids.type.shape[1]
        return isinstance(k, int) and k >= 1 and weights.type.shape == ids.type.shape

    def expert(self, y: Value, tokens) -> _Expert | None:
        """The ops computing ``y`` that nothing else uses, as an expert template, or None."""
        root = self.top_level(y)
        if root is None or len(y.uses) != 1 or not (_is_elementwise(root) or _linear_parts(root)):
            return None
        members = {id(root)}
        seen = {id(root)}
        heap: list = []

        def follow(op: Operation):
            parts = _linear_parts(op)
            for v in ([parts[0]] if parts else op.operands):
                p = self.top_level(v)
                if p is not None and id(p) not in seen and (_is_elementwise(p) or _linear_parts(p)):
                    seen.add(id(p))
                    heapq.heappush(heap, (-self.position(p), id(p), p))

        follow(root)
        # users come after producers: deciding in reverse block order, every user of a candidate
        # that belongs to the expert has been decided before the candidate
        while heap:
            _, _, p = heapq.heappop(heap)
            if all(id(u) in members for r in p.results for u in r.users):
                members.add(id(p))
                follow(p)

        nodes: list[_Node] = []
        leaves: list[Value] = []
        weights: list[tuple[Value, bool]] = []
        refs: dict[int, tuple] = {}

        def visit(v: Value) -> tuple:   # operands first (the expert is a small DAG)
            if id(v) in refs:
                return refs[id(v)]
            op = _producer(v)
            if op is None or id(op) not in members:
                ref = ("leaf", len(leaves))
                leaves.append(v)
            else:
                parts = _linear_parts(op)
                if parts:
                    h, w, kn = parts
                    data = visit(h)
                    wref = ("weight", len(weights))
                    weights.append((w, kn))
                    node = _Node(op, "linear", (data, wref), ("linear", data, str(w.type), str(v.type)))
                else:
                    ins = tuple(visit(o) for o in op.operands)
                    node = _Node(op, "elementwise", ins, (op.name, _attrs_key(op), ins, str(v.type)))
                nodes.append(node)
                ref = ("node", len(nodes) - 1)
            refs[id(v)] = ref
            return ref

        if visit(y)[0] != "node":   # pragma: no cover - y's producer is a member
            return None
        ex = _Expert(nodes, leaves, weights)
        return ex if self.row_local(ex, tokens) else None

    def row_local(self, ex: _Expert, tokens) -> bool:
        """Every output row depends on the same row of the ``[T, *]`` inputs only, so the expert
        can run on permuted (and repeated) rows; the linears read rows, and the other inputs
        broadcast along rows."""
        if not ex.weights:
            return False
        rows = []
        for v in ex.leaves:
            t = _tensor(v)
            if t is None or len(t.shape) > 2:
                return False
            if len(t.shape) == 2 and t.shape[0] == tokens:
                rows.append(True)
            elif len(t.shape) < 2 or t.shape[0] == 1:
                rows.append(False)
            else:
                return False
        per_row = []

        def is_row(ref):
            return rows[ref[1]] if ref[0] == "leaf" else per_row[ref[1]]

        for node in ex.nodes:
            t = node.op.result.type
            if node.kind == "linear":
                row = is_row(node.refs[0])
                if not row:
                    return False
            else:
                row = any(is_row(r) for r in node.refs)
            if row and (len(t.shape) != 2 or t.shape[0] != tokens):
                return False
            if not row and len(t.shape) == 2 and t.shape[0] != 1:
                return False
            per_row.append(row)
        return per_row[-1]

    @staticmethod
    def same_structure(experts: list[_Expert]) -> bool:
        first = experts[0]
        for ex in experts[1:]:
            if [n.key for n in ex.nodes] != [n.key for n in first.nodes] or len(ex.leaves) != len(first.leaves):
                return False
            if not all(_same_leaf(a, b) for a, b in zip(ex.leaves, first.leaves)):
                return False
        return True

    # -- emission ------------------------------------------------------------------------------
    def emit(self, b: Builder, loc, ids: Value, weights: Value, tokens, experts: list[_Expert]) -> Value:
        """The dispatch chain for one block (experts ordered by expert index; ``[tokens, *]``
        inputs of the experts are permuted)."""
        E = len(experts)
        k = ids.type.shape[1]
        order, offsets = b.create("sc.moe_dispatch", [ids], {"num_experts": E}, loc=loc).results
        tpl = experts[0]
        done: dict[tuple, Value] = {}
        stacks: dict[int, Value] = {}
        permuted: dict[int, Value] = {}

        def stacked(slot: int) -> Value:
            if slot not in stacks:
                ws = [ex.weights[slot] for ex in experts]
                hint = _stacked_name([w for w, _ in ws])
                if all(kn for _, kn in ws):
                    s = b.create("sc.stack", [w for w, _ in ws], {"axis": 0}, loc=loc).result
                    s = b.create("sc.transpose", [s], {"perm": (0, 2, 1)}, loc=loc, result_hints=[hint]).result
                else:
                    vals = [b.create("sc.transpose", [w], {"perm": (1, 0)}, loc=loc).result if kn else w
                            for w, kn in ws]
                    s = b.create("sc.stack", vals, {"axis": 0}, loc=loc, result_hints=[hint]).result
                stacks[slot] = s
            return stacks[slot]

        def value(ref) -> Value:
            if ref[0] == "leaf":
                v = tpl.leaves[ref[1]]
                t = v.type
                if len(t.shape) == 2 and t.shape[0] == tokens:
                    if id(v) not in permuted:
                        permuted[id(v)] = b.create("sc.moe_permute", [v, order], {"top_k": k}, loc=loc).result
                    return permuted[id(v)]
                return v
            if ref in done:
                return done[ref]
            node = tpl.nodes[ref[1]]
            if node.kind == "linear":
                out = b.create("sc.grouped_matmul", [value(node.refs[0]), stacked(node.refs[1][1]), offsets],
                               loc=node.op.loc).result
            else:
                out = b.create(node.op.name, [value(r) for r in node.refs], dict(node.op.attrs),
                               loc=node.op.loc).result
            done[ref] = out
            return out

        y = value(("node", len(tpl.nodes) - 1))
        return b.create("sc.moe_combine", [y, order, weights], loc=loc).result


def _stacked_name(ws: list[Value]) -> str | None:
    """``experts.gate_proj.weight`` for ``experts.{e}.gate_proj.weight`` (a readable hint)."""
    hints = [w.name_hint for w in ws]
    if not all(hints):
        return None
    first = hints[0].split(".")
    for i, part in enumerate(first):
        if part == "0" and all(h.split(".")[:i] + h.split(".")[i + 1:] == first[:i] + first[i + 1:]
                               and h.split(".")[i] == str(e) for e, h in enumerate(hints)):
            return ".".join(first[:i] + first[i + 1:])
    return None


@register_pass
@dataclass(frozen=True)
class SparseActivation(Pass):
    """rewrite a dense MoE (every expert on every token, masked by the routing weights) into top-k dispatch"""
    name = "sparse-activation"
    def run(self, graph, stats: Statistics) -> None:
        for fn in graph.functions.values():
            _FunctionRewrite(fn, stats).run()
