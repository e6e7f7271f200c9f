"The package's layering: modules depend downwards, never in a circle, not even through a name written as a string."
import ast, re
from pathlib import Path

PACKAGE = Path(__file__).parent.parent/'mlops_nb'

def imports(path:Path)->set[str]:
    "The mlops_nb modules a module imports, at its top, inside a function, or by name through `import_module`."
    tree, out = ast.parse(path.read_text()), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module: out.add(node.module)
        elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith('mlops_nb'):
            out |= {node.module.split('.')[1]} if '.' in node.module else {a.name for a in node.names}
        elif isinstance(node, ast.Import): out |= {a.name.split('.')[1] for a in node.names if a.name.startswith('mlops_nb.')}
        elif isinstance(node, ast.Call) and getattr(node.func, 'id', getattr(node.func, 'attr', '')) == 'import_module':
            out |= {a.value.split('.')[1] for a in node.args[:1] if isinstance(a, ast.Constant) and a.value.startswith('mlops_nb.')}
    return out - {path.stem}

def test_no_module_reaches_a_module_that_reaches_back():
    modules = {p.stem for p in PACKAGE.glob('*.py') if not p.stem.startswith('_')}
    graph = {m: imports(PACKAGE/f'{m}.py') & modules for m in modules}
    def path_back(start, node, seen):
        for n in sorted(graph[node]):
            if n == start: return [node, n]
            if n not in seen and (rest := path_back(start, n, seen | {n})): return [node, *rest]
        return None
    circles = [c for m in sorted(modules) if (c := path_back(m, m, {m}))]
    assert not circles, 'import circles: ' + '; '.join(' -> '.join(c) for c in circles)
    assert graph['core'] == set() and graph['spark'] <= {'contract', 'core', 'data', 'drift', 'estimate', 'register'}, (graph['core'], graph['spark'])

NBS = PACKAGE.parent/'nbs'

def test_a_notebook_uses_only_the_notebooks_before_it():
    "Reading order is dependency order: a notebook, its exported module included, imports only modules taught earlier."
    exports = {}
    for nb in NBS.glob('[0-9]*.ipynb'):
        if m := re.search(r'default_exp\s+(\w+)', nb.read_text()): exports[m.group(1)] = nb.stem
    # Spark is an optional engine that `score_file` and `monitor_file` load by name when asked; it is taught
    # after them because its notebook shows it gives their results.
    late, engines = [], {('deploy', 'spark')}
    for module, stem in exports.items():
        uses = imports(PACKAGE/f'{module}.py') | set(re.findall(r'mlops_nb\.(\w+) import', (NBS/f'{stem}.ipynb').read_text()))
        late += [f'{stem} uses {exports[u]}' for u in sorted(uses & exports.keys()) if exports[u] > stem and (module, u) not in engines]
    assert not late, late
