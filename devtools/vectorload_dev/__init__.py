"""vectorload's development tooling, kept out of the product: the local control plane
(`cluster`), the process kubelet (`kubelet`), the whole-system harness (`e2e`) behind
`make demo` and `tests/e2e`, and the test support package (`testing`).

It is its own distribution (`vectorload-dev`, source root `devtools/`), installed editable by
`make venv` beside the product. The product wheel and image never contain it, and no product
module imports it (`tests/packaging/` checks both).
"""

__version__ = "0.1.0"
