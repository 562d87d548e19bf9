"""The executable: runs a lowered ``Plan`` on NumPy arrays with preplanned memory.

For each distinct set of symbolic-dim sizes (``tokens=5``...) the executable prepares once:
concrete shapes, an arena holding every intermediate buffer at the offset the memory planner
chose, views of static buffers, and for each step the argument list its kernel is called with.
A call then only checks the inputs, puts them (and fresh arrays for the results) into the
prepared argument lists, and calls the kernels in order: the per-call Python work is one
loop over ``fn(*args)``. A step whose arrays are all static (arena buffers, weights,
constants) and whose kernel offers ``bind`` is bound when preparing: its entry is the bound
callable with no arguments, which skips the kernel wrapper's per-call reshapes and checks.
After its first call a prepared state also gets a generated straight-line function
(``_fast_call``) that later calls with inputs of the same shapes and dtypes go through: the
input copies, the bound entries and the result copies, with no lookups or loops. After
``NATIVE_AFTER`` such calls, a state whose steps are all bound native calls runs them as one
compiled function (a native plan, ``runtime.cpu.native``): one call from Python per call.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np

from ..errors import SparsecError
from ..ir.types import TensorType, bound_dims, dim_symbols
from .memory import liveness, place, storage_root
from .plan import Plan


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name, "").strip()
    if not v:
        return default
    try:
        n = int(v)
    except ValueError:
        raise SparsecError(f"environment variable {name}={v!r}: expected a whole number of calls (0: off)") from None
    if n < 0:
        raise SparsecError(f"environment variable {name}={v!r}: expected 0 or more")
    return n


MAX_PREPARED = 16  # sets of sizes kept prepared (arena + argument lists) per executable
_NO_DIMS = contextlib.nullcontext()
#: bind the steps whose arrays are all static (``Kernel.bind``) when preparing; tests turn it
#: off to compare the two (they must give the same bits)
PREBIND = True
#: call a prepared state through its generated straight-line function (``_fast_call``) when the
#: inputs have the shapes and dtypes it was made for; tests turn it off to compare
FAST_CALLS = True
#: after this many calls through a state's fast call, run its steps as one native plan
#: (``runtime.cpu.native``) where every step is a bound native call; 0: never. (Building one
#: takes ~0.15 s of Numba compilation: worth it for a state that is called again and again.)
#: The environment variable ``SPARSEC_NATIVE_AFTER`` sets it (0 turns native plans off).
NATIVE_AFTER = _env_int("SPARSEC_NATIVE_AFTER", 3)


class RuntimeInputError(SparsecError):
    """Inputs of the wrong number, dtype or shape for a compiled function."""


class KernelError(SparsecError):
    """A kernel failed at run time; names the op and where it came from."""


@dataclass
class _Prepared:
    entries: list            # (fn, args, patches, step index); patches None for plain kernels
    input_patches: list      # per input: [(args list, position)]
    staged: dict             # input position -> the static buffer it is copied into per call
    fresh: list              # (root slot, shape, dtype, [(args, position)]) allocated per call
    static_values: dict      # slot -> array (arena buffers, weights, constants, static views)
    arena_bytes: int
    result_sources: list     # per output: ("static", array) | ("slot", slot)
    errors: object = None    # a target's per-call error slots (CUDA: device int64 [n_checked, 2])
    checked_steps: tuple = ()  # the step index of each error row
    #: whether a step runs a view kernel per call (only those read the symbol sizes, through
    #: ``bound_dims``; entering it measured 7-10 us with cold caches, so calls skip it otherwise)
    needs_dims: bool = True
    #: the generated call for these sizes (``Executable._fast_call``): False until made, None
    #: where this state cannot have one
    fast: object = False
    #: its native plan (``runtime.cpu.native.NativePlan``): None until made (or where the
    #: steps cannot have one); ``native_error``: why building one failed, if it did
    native: object = None
    native_error: object = None
    #: CUDA: the recorded launches of a call with these sizes (``runtime.cuda.replay.Replay``),
    #: None until ``replay_calls`` calls made one
    replay: object = None
    replay_calls: int = 0


class Executable:
    """``Executable(plan)(*arrays) -> tuple of arrays``."""

    #: inputs up to this many bytes (not updated in place) are copied into a buffer of their own
    #: per call, so the steps reading them have static arrays and can be prebound (a decode
    #: step's token ids and positions, a layer's one-token activations); 0: never
    stage_input_bytes = 1 << 16
    #: results up to this many bytes are computed into a buffer of their own and copied out per
    #: call, so the steps writing them can be prebound too (a one-token layer's output: the
    #: combine); 0: a fresh array per call that the last step writes
    stage_output_bytes = 1 << 16

    def __init__(self, plan: Plan):
        self.plan = plan
        self.storages = liveness(plan)
        self._prepared: dict[tuple, _Prepared] = {}
        # per input: (name, type, rank, [(axis, symbol)], NumPy dtype, [(axis, static size)]): what
        # bind checks
        self._input_dims = []
        for slot_i, name in zip(plan.inputs, plan.input_names):
            t = plan.slots[slot_i].type
            syms = [(ax, d) for ax, d in enumerate(t.shape) if isinstance(d, str) and dim_symbols(d) == (d,)]
            static = [(ax, d) for ax, d in enumerate(t.shape) if isinstance(d, int)]
            self._input_dims.append((name, t, t.rank, syms, t.dtype.np, static))
        self._symbols = sorted({d for _, _, _, syms, _, _ in self._input_dims for _, d in syms})
        self._inplace = set(plan.inplace_inputs)
        # prepared state depends only on the symbols that size buffers the executable owns
        # (a KV cache length ``ctx`` that only sizes donated inputs does not force a new plan)
        input_roots = {storage_root(plan, i) for i in plan.inputs}
        owned = set()
        for s in plan.slots:
            if s.kind == "buffer" and storage_root(plan, s.index) not in input_roots and isinstance(s.type, TensorType):
                for d in s.type.shape:
                    if isinstance(d, str):
                        owned.update(dim_symbols(d))
        self._key_symbols = [s for s in self._symbols if s in owned]

    # -- calling ---------------------------------------------------------------------------
    #: what an input may be, for errors (the CUDA executable also takes device arrays)
    input_kinds = "a NumPy array"

    @staticmethod
    def _is_input_array(x) -> bool:
        return isinstance(x, np.ndarray)

    def bind(self, arrays) -> dict[str, int]:
        """Check the inputs against the function's types; returns the symbol sizes they give."""
        if len(arrays) != len(self._input_dims):
            names = ", ".join(d[0] for d in self._input_dims)
            raise RuntimeInputError(f"@{self.plan.function} takes {len(self._input_dims)} inputs ({names}), "
                                    f"got {len(arrays)}")
        b: dict[str, int] = {}
        for x, (name, t, rank, syms, dt, static) in zip(arrays, self._input_dims):
            if type(x) is not np.ndarray and not self._is_input_array(x):
                raise RuntimeInputError(f"input {name!r}: expected {self.input_kinds} {t.pretty()}, "
                                        f"got {type(x).__name__}")
            xdt = x.dtype
            if xdt is not dt and xdt != dt:
                raise RuntimeInputError(f"input {name!r}: expected dtype {t.dtype} ({t.pretty()}), got {x.dtype}")
            shape = x.shape
            if len(shape) != rank:
                raise RuntimeInputError(f"input {name!r}: expected rank {t.rank} {t.pretty()}, got shape {x.shape}")
            for ax, d in static:
                if shape[ax] != d:
                    raise RuntimeInputError(f"input {name!r}: dim {ax} must be {d} ({t.pretty()}), "
                                            f"got shape {x.shape}")
            for ax, s in syms:
                n = shape[ax]
                if b.setdefault(s, n) != n:
                    raise RuntimeInputError(f"input {name!r}: dim {ax} is {s!r}={b[s]} from an earlier input, "
                                            f"got {n}")
        return b

    def __call__(self, *arrays) -> tuple[np.ndarray, ...]:
        fast = self._fast
        if fast is not None:  # the last prepared state's generated call: None if the inputs differ
            out = fast(*arrays)
            if out is not None:
                return out
        for a in arrays:
            if type(a) is not np.ndarray:
                arrays = [a if isinstance(a, np.ndarray) else np.asarray(a) for a in arrays]
                break
        b = self.bind(arrays)
        prep = self._prepared_for(b)
        out = self._run(prep, arrays, b)
        if prep.fast is False:
            prep.fast = self._fast_call(prep, arrays) if FAST_CALLS else None
        self._fast = prep.fast
        return out

    _fast = None

    def _fast_call(self, prep: _Prepared, arrays, native=None):
        """A Python function generated for this prepared state, or None where it cannot have one:
        ``f(*arrays)`` returns the results as ``_run`` would, or None (nothing done) when the
        inputs are not NumPy arrays of exactly the shapes and dtypes of ``arrays``.

        Why: the MoE layer at one token is ~200 us of kernels, and the executable's own Python
        (checks, the prepared-state lookup, the loop over entries, the staging) measured 18 us
        of it after an fp32 layer had streamed its weights and left the caches cold; one
        straight-line function whose constants are the bound entries and buffers touches far
        fewer objects. Only for states where the input shapes decide everything: every input
        symbol sizes the key (so equal shapes mean the same bindings), no per-call views of
        inputs or per-call error slots.

        After ``NATIVE_AFTER`` calls the function makes its successor (``_go_native``): where every
        step is a bound native call, the same function with one native plan (``native``, a
        ``runtime.cpu.native.NativePlan``) in place of the calls of the steps. A failing step
        then either has its status checked as before, or its exception leaves the plan: the
        function returns None and the general path runs the steps again and names the op."""
        if prep.needs_dims or prep.errors is not None or set(self._symbols) != set(self._key_symbols) \
                or type(self)._run is not Executable._run or type(self)._run_steps is not Executable._run_steps \
                or any(p is not None for _, _, p, _ in prep.entries):
            return None
        ns: dict = {"_nd": np.ndarray, "_copyto": np.copyto, "_SE": SparsecError, "_err": self._kernel_error,
                    "_require": np.require, "_empty": np.empty}
        names = [f"x{i}" for i in range(len(arrays))]
        lines = ["def fast(*xs):", f"    if len(xs) != {len(names)}: return None"]
        if native is None and NATIVE_AFTER > 0:  # count the calls, then make the native successor
            # (shape and dtype stand-ins: the caller's arrays are not kept)
            like = [np.broadcast_to(np.zeros((), x.dtype), x.shape) if type(x) is np.ndarray else x for x in arrays]
            ns["_calls"], ns["_go_native"] = 0, lambda: self._go_native(prep, like)
            lines += ["    global _calls", "    _calls += 1", f"    if _calls == {NATIVE_AFTER}: _go_native()"]
        if names:
            lines.append(f"    {', '.join(names)}, = xs")
        for i, x in enumerate(arrays):
            if type(x) is not np.ndarray or x.dtype is not self._input_dims[i][4]:
                return None
            ns[f"_s{i}"], ns[f"_d{i}"] = x.shape, x.dtype
            lines.append(f"    if type(x{i}) is not _nd or x{i}.shape != _s{i} or x{i}.dtype is not _d{i}: return None")
        holders: dict = {}  # id(list) -> its name

        def ref(lst) -> str:
            n = holders.get(id(lst))
            if n is None:
                n = holders[id(lst)] = f"_l{len(holders)}"
                ns[n] = lst
            return n
        for i, patches in enumerate(prep.input_patches):
            buf = prep.staged.get(i)
            if buf is not None:
                ns[f"_b{i}"] = buf
                lines.append(f"    _copyto(_b{i}, x{i})")
                continue
            arg = f"x{i}"
            if i not in self._inplace:  # (as _run: the kernels get a C-contiguous copy, a result the array)
                arg = f"c{i}"
                lines.append(f"    c{i} = x{i} if x{i}.flags.c_contiguous else _require(x{i}, requirements='C')")
            lines += [f"    {ref(args)}[{j}] = {arg}" for args, j in patches]
        for n, (root, shape, dtype, patches) in enumerate(prep.fresh):
            ns[f"_fs{n}"], ns[f"_fd{n}"] = shape, dtype
            lines.append(f"    o{n} = _empty(_fs{n}, _fd{n})")
            lines += [f"    {ref(args)}[{j}] = o{n}" for args, j in patches]
        if native is not None:
            ns["_plan"], ns["_status"] = native.run, native.status
            ns["_bad"] = {k: fn.checked[1] for fn, _a, _p, k in prep.entries if hasattr(fn, "checked")}
            lines += ["    try:", "        k = _plan()", "    except Exception:",
                      "        return None",  # the general path runs the steps again and names the op
                      "    if k >= 0:", "        try:", "            _bad[k](_status[0])", "        except _SE:",
                      "            raise", "        except Exception as e:", "            raise _err(k, e) from e",
                      "        return None"]
        else:
            lines += ["    k = -1", "    try:"]
            for e, (fn, args, _p, k) in enumerate(prep.entries):
                lines.append(f"        k = {k}")
                chk = getattr(fn, "checked", None) if not args else None
                if chk is not None:  # a status-returning call (runtime.cpu.common.checked): tested here
                    ns[f"_f{e}"], ns[f"_c{e}"] = chk[0], chk[1]
                    lines += [f"        r = _f{e}()", f"        if r != {int(chk[2])}: _c{e}(r)"]
                    continue
                ns[f"_f{e}"] = fn
                lines.append(f"        _f{e}()" if not args else f"        _f{e}(*{ref(args)})")
            if not prep.entries:
                lines.append("        pass")
            lines += ["    except _SE:", "        raise", "    except Exception as e:", "        if k < 0:",
                      "            raise", "        raise _err(k, e) from e"]
        outs = []
        for n, src in enumerate(prep.result_sources):
            if src[0] == "static":
                ns[f"_r{n}"] = src[1]
                outs.append(f"_r{n}.copy()")
            elif src[0] == "input":
                outs.append(f"x{src[1]}")
            else:
                outs.append(f"{ref(src[1][0])}[{src[1][1]}]")
        lines.append(f"    return ({', '.join(outs)},)")
        exec(compile("\n".join(lines) + "\n", f"<sparsec fast call @{self.plan.function}>", "exec"), ns)
        return ns["fast"]

    def _go_native(self, prep: _Prepared, arrays) -> None:
        """Make ``prep``'s native plan and the fast call that runs it, and call through that from
        now on; where the steps cannot have one, keep the fast call as it is. A failure to build
        one is kept in ``prep.native_error`` (the calls go on as before)."""
        from .cpu import native
        try:
            plan = native.plan_function(prep.entries)
        except Exception as e:  # noqa: BLE001 - the fast call still works; the error is kept for tests
            prep.native_error = e
            return
        if plan is None:
            return
        fast = self._fast_call(prep, arrays, native=plan)
        if fast is not None:
            if self._fast is prep.fast:
                self._fast = fast
            prep.native, prep.fast = plan, fast

    def _kernel_error(self, k: int, e: Exception, what: str = "kernel") -> KernelError:
        """What step ``k``'s exception ``e`` becomes: a ``KernelError`` naming the op and where it
        came from, as the interpreter does."""
        step = self.plan.steps[k]
        where = f" (from {step.loc})" if step.loc else ""
        return KernelError(f"{step.op}{where}: {what} {step.kernel} failed: {type(e).__name__}: {e}")

    def _prepared_for(self, bindings: dict[str, int]) -> _Prepared:
        """The prepared arena and argument lists for these symbol sizes (an LRU of ``MAX_PREPARED``)."""
        key = tuple([bindings.get(s, 0) for s in self._key_symbols])
        prep = self._prepared.get(key)
        if prep is None:
            if len(self._prepared) >= MAX_PREPARED:  # bound the memory held for past sizes
                self._prepared.pop(next(iter(self._prepared)))
            prep = self._prepared[key] = self._prepare(bindings)
        return prep

    def _run_steps(self, prep: _Prepared, bindings, alloc=np.empty, finish=None, what: str = "kernel") -> None:
        """Fresh result arrays (``alloc``) into the argument lists, then every step in order;
        ``finish()`` (the CUDA device's synchronize) inside the same error handling. A kernel that
        raises becomes a ``KernelError`` naming the op and its source line."""
        for root, shape, dtype, patches in prep.fresh:
            a = alloc(shape, dtype)
            for args, j in patches:
                args[j] = a
        k = -1
        try:
            # view kernels of per-call arrays may read symbol sizes
            with bound_dims(bindings) if prep.needs_dims else _NO_DIMS:
                for fn, args, patches, k in prep.entries:
                    if patches is None:
                        fn(*args)
                    else:
                        outs = fn(*args)
                        for out, plist in zip(outs, patches):
                            for a, j in plist:
                                a[j] = out
            if finish is not None:
                finish()
        except SparsecError:
            raise
        except Exception as e:
            if k < 0:
                raise
            raise self._kernel_error(k, e, what) from e

    def _run(self, prep: _Prepared, arrays, bindings) -> tuple[np.ndarray, ...]:
        for i, (x, patches) in enumerate(zip(arrays, prep.input_patches)):
            buf = prep.staged.get(i)
            if buf is not None:
                np.copyto(buf, x)
                continue
            if not x.flags.c_contiguous and i not in self._inplace:
                x = np.require(x, requirements="C")
            for args, j in patches:
                args[j] = x
        self._run_steps(prep, bindings)
        results = []
        for src in prep.result_sources:
            if src[0] == "static":
                results.append(src[1].copy())
            elif src[0] == "input":
                results.append(arrays[src[1]])
            else:  # the producing step's args hold the per-call array at the recorded place
                args, j = src[1]
                results.append(args[j])
        return tuple(results)

    def warmup(self, progress=None) -> float:
        """Run every kernel once on small inputs (each symbolic dim = 1, all values 1) so that
        JIT compilation happens now; ``progress(step_index)`` after each step. Returns seconds.
        A kernel that rejects these values at run time (an index out of range) is left to compile
        at the first real call."""
        import time
        t0 = time.perf_counter()
        b = {s: 1 for s in self._symbols}
        arrays = [np.ones(t.concrete(b), t.dtype.np) for _, t, *_ in self._input_dims]
        for i in self._inplace:  # updated in place: generate passes strided KV-cache slices
            t = self._input_dims[i][1]
            shape = t.concrete(b)
            if len(shape) >= 2:  # [..., ctx, head_dim] cut from a longer buffer, as generate does
                big = np.ones(shape[:-2] + (2 * shape[-2] + 1, shape[-1]), t.dtype.np)
                arrays[i] = big[..., :shape[-2], :]
        prep = self._prepared.get(tuple(1 for _ in self._key_symbols)) or self._prepare(b)
        for i, (x, patches) in enumerate(zip(arrays, prep.input_patches)):
            if i in prep.staged:
                np.copyto(prep.staged[i], x)
            for args, j in patches:
                args[j] = x
        for root, shape, dtype, patches in prep.fresh:
            a = np.empty(shape, dtype)
            for args, j in patches:
                args[j] = a
        with bound_dims(b), np.errstate(all="ignore"):
            for fn, args, patches, k in prep.entries:
                try:
                    outs = fn(*args)
                except Exception:  # noqa: BLE001 - data-dependent failure on dummy values
                    break
                if patches is not None:
                    for out, plist in zip(outs, patches):
                        for a, j in plist:
                            a[j] = out
                if progress is not None:
                    progress(k)
        return time.perf_counter() - t0

    # -- preparing for one set of sizes ----------------------------------------------------
    # hooks of a target's executable (the CUDA one: device memory, uploaded constants, error slots)
    def _new_arena(self, nbytes: int):
        return np.empty(nbytes, np.uint8)

    def _weight_value(self, slot):
        return self.plan.weights[slot.weight]

    def _constant_value(self, slot):
        return slot.value

    def _error_slots(self) -> tuple[object, dict]:
        """(error array or None, step index -> extra argument): none on the CPU (kernels raise)."""
        return None, {}

    def _prepare(self, bindings: dict[str, int]) -> _Prepared:
        plan = self.plan
        shapes, nbytes = {}, {}
        for s in plan.slots:
            if isinstance(s.type, TensorType):
                shapes[s.index] = s.type.concrete(bindings)
                nbytes[s.index] = int(np.prod(shapes[s.index], dtype=np.int64)) * s.type.dtype.np.itemsize
            else:
                shapes[s.index], nbytes[s.index] = None, 0
        # results the caller keeps get fresh arrays per call (weights and constants are copied out)
        output_roots = {r for r in (storage_root(plan, o) for o in plan.outputs) if plan.slots[r].kind == "buffer"}
        input_roots = {storage_root(plan, i) for i in plan.inputs}
        dynamic_roots = output_roots | input_roots
        arena_storages = [st for st in self.storages if st.root not in dynamic_roots]
        offsets, arena_bytes = place(arena_storages, nbytes)
        arena = self._new_arena(max(arena_bytes, 1))

        static: dict[int, np.ndarray] = {}
        for s in plan.slots:
            if s.kind == "weight":
                static[s.index] = self._weight_value(s)
            elif s.kind == "constant":
                static[s.index] = self._constant_value(s)
            elif s.kind == "buffer" and s.alias_of is None and s.index in offsets:
                off = offsets[s.index]
                static[s.index] = arena[off:off + nbytes[s.index]].view(s.type.dtype.np).reshape(shapes[s.index])

        def stageable(i: int, limit: int) -> bool:
            # (its shape must be fixed by this prepared state's key: a symbol that sizes only
            # inputs does not make a new state)
            t = plan.slots[i].type
            return nbytes[i] <= limit and isinstance(t, TensorType) and \
                all(isinstance(d, int) or set(dim_symbols(d)) <= set(self._key_symbols) for d in t.shape)

        staged = {}
        if self.stage_input_bytes:
            for pos, i in enumerate(plan.inputs):
                if pos not in self._inplace and i not in output_roots and stageable(i, self.stage_input_bytes):
                    staged[pos] = static[i] = np.empty(shapes[i], plan.slots[i].type.dtype.np)
        staged_slots = {plan.inputs[pos] for pos in staged}
        # small results: a buffer of their own, copied out per call (as static results are)
        if self.stage_output_bytes:
            for r in sorted(output_roots - input_roots):
                if stageable(r, self.stage_output_bytes):
                    static[r] = np.empty(shapes[r], plan.slots[r].type.dtype.np)
                    staged_slots.add(r)

        errors, error_arg = self._error_slots()
        # slots whose array changes per call: inputs (not staged), fresh outputs, and views/in-place
        # results of them
        dynamic = {s.index for s in plan.slots if storage_root(plan, s.index) in dynamic_roots - staged_slots}
        entries = []
        slot_uses: dict[int, list] = {}  # dynamic slot -> [(args, position)] to patch per call
        with bound_dims(bindings):
            for step_index, step in enumerate(plan.steps):
                ins = list(step.inputs)
                if step.view and not step.inplace and all(i not in dynamic for i in ins):
                    outs = step.fn(*[static[i] for i in ins])  # a view of static memory: once, now
                    for o, a in zip(step.outputs, outs):
                        # (an empty array shares no memory with anything: nothing to alias)
                        if isinstance(a, np.ndarray) and a.size and not np.shares_memory(a, static[ins[0]]):
                            raise KernelError(f"{step.op}: view kernel {step.kernel} returned a copy, not a view")
                        static[o] = a
                    continue
                args = [static.get(i) for i in ins]
                for j, i in enumerate(ins):
                    if i in dynamic:
                        slot_uses.setdefault(i, []).append((args, j))
                if step.view or step.inplace:
                    patches = [slot_uses.setdefault(o, []) for o in step.outputs]
                    entries.append((step.fn, args, patches, step_index))
                else:
                    base = len(args)
                    for k, o in enumerate(step.outputs):
                        args.append(static.get(o))
                        if o in dynamic:
                            slot_uses.setdefault(o, []).append((args, base + k))
                    if step_index in error_arg:
                        args.append(error_arg[step_index])
                    bound = None
                    if PREBIND and step.bind is not None and step_index not in error_arg \
                            and not any(i in dynamic for i in ins) and not any(o in dynamic for o in step.outputs):
                        bound = step.bind(*args)
                    if bound is not None:  # every array is the same each call: bound once, now
                        entries.append((bound, (), None, step_index))
                    else:
                        entries.append((step.fn, args, None, step_index))

        result_sources = []
        for o in plan.outputs:
            if o in plan.inputs:
                result_sources.append(("input", plan.inputs.index(o)))
            elif o not in dynamic:
                result_sources.append(("static", static[o]))
            else:  # a holder patched like every other use of the slot
                holder = [None]
                slot_uses.setdefault(o, []).append((holder, 0))
                result_sources.append(("slot", (holder, 0)))
        input_patches = [slot_uses.get(i, []) for i in plan.inputs]
        fresh = []
        for st in self.storages:
            if st.root in output_roots and st.root not in input_roots and st.root not in staged_slots:
                fresh.append((st.root, shapes[st.root], plan.slots[st.root].type.dtype.np,
                              slot_uses.get(st.root, [])))
        return _Prepared(entries, input_patches, staged, fresh, static, arena_bytes, result_sources, errors,
                         tuple(sorted(error_arg)), needs_dims=any(p is not None for _, _, p, _ in entries))

    # -- reports ---------------------------------------------------------------------------
    def memory_report(self, bindings: dict[str, int]) -> dict:
        """Arena size with planning against the sum of all intermediate buffers, for these sizes."""
        key = tuple(bindings.get(s, 0) for s in self._key_symbols)
        prep = self._prepared.get(key) or self._prepare(bindings)
        total = 0
        for s in self.plan.slots:
            if s.kind == "buffer" and s.alias_of is None and isinstance(s.type, TensorType):
                total += int(np.prod(s.type.concrete(bindings), dtype=np.int64)) * s.type.dtype.np.itemsize
        return {"arena_bytes": prep.arena_bytes, "unplanned_bytes": total}

