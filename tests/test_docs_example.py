"""The worked example in docs/search_space.md runs as written: a user op, a user space, a search."""
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "search_space.md"


def test_worked_example_registers_op_declares_space_and_searches_it():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert blocks, "docs/search_space.md lost its worked example"
    namespace: dict = {}
    exec(compile(blocks[-1], str(DOC), "exec"), namespace)  # the block asserts the search found the target
    search, hidden = namespace["search"], namespace["hidden"]
    assert search.best(1)[0][0] == hidden
    # the search evaluated far fewer candidates than the space holds
    assert len(search.fitness) < namespace["space"].cardinality
