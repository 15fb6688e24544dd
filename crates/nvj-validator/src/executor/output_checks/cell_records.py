# IPython startup file of notebook-gitops' runner (written into the run's own IPython profile,
# loaded by the kernel papermill starts). It records, for the output checks of
# spec.validationConfig, what the notebook file cannot say: each cell's result value (its type,
# shape, length, number) and the Python warnings shown while a cell ran. JSON lines, keyed by the
# cell's execution count, appended to the file NBG_CELL_RECORDS names. It changes nothing
# the notebook shows, and leaves only the warnings hook behind in the kernel.


def _nbg_setup():
    import json
    import numbers
    import os
    import warnings

    path = os.environ.get("NBG_CELL_RECORDS")
    shell = get_ipython()  # noqa: F821 - IPython's startup namespace
    if not path or shell is None:
        return

    def write(record):
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except Exception:
            pass

    def bounded_repr(value):
        try:
            text = repr(value)
        except Exception as e:
            text = f"<repr failed: {e!r}>"
        return text if len(text) <= 200 else text[:197] + "..."

    def describe(value):
        types = []
        for c in type(value).__mro__:
            if c is not object:
                types += [c.__name__, f"{c.__module__}.{c.__qualname__}"]
        record = {"type": types, "repr": bounded_repr(value)}
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            record["number"] = float(value)
        shape = getattr(value, "shape", None)
        if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
            record["shape"] = list(shape)
            if shape == () and "number" not in record:
                try:
                    record["number"] = float(value)
                except Exception:
                    pass
        elif isinstance(value, (list, tuple)):
            rows = [len(r) for r in value if isinstance(r, (list, tuple))]
            same = len(rows) == len(value) and len(set(rows)) == 1
            record["shape"] = [len(value), rows[0]] if value and same else [len(value)]
        try:
            record["len"] = len(value)
        except Exception:
            pass
        return record

    # Warnings shown since the last cell ended: they belong to the cell that ends next (the
    # shell's execution count is already the next cell's while a cell runs).
    pending = []

    def post_run_cell(result):
        count = result.execution_count
        if count is None:
            pending.clear()
            return
        for warning in pending:
            write(dict(warning, execution_count=count))
        pending.clear()
        record = {"kind": "value", "execution_count": count}
        if result.result is None:
            record["none"] = True
        else:
            record.update(describe(result.result))
        write(record)

    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        pending.append({
            "kind": "warning",
            "category": getattr(category, "__name__", str(category)),
            "message": str(message)[:500],
        })
        return shown(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
    shell.events.register("post_run_cell", post_run_cell)


_nbg_setup()
del _nbg_setup
