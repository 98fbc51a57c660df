import ast, glob, json, sys
SP = '/tmp/stixvenv/lib/python3.11/site-packages'
seen = {}
def add(p, src):
    if p not in seen:
        seen[p] = src
for f in [SP + '/stix2patterns/test/v21/spec_examples.txt', SP + '/stix2patterns/test/v20/spec_examples.txt']:
    for line in open(f):
        line = line.rstrip('\n')
        if line.strip():
            add(line, 'spec_examples')
files = glob.glob(SP + '/stix2patterns/test/**/*.py', recursive=True) + glob.glob(SP + '/stix2matcher/test/**/*.py', recursive=True)
for f in files:
    tree = ast.parse(open(f).read())
    name = f.split('site-packages/')[1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            s = node.value
            if '[' in s and ':' in s and len(s) < 2000 and not s.lstrip().startswith('{') and '\n' not in s.strip('\n') or (isinstance(node.value, str) and s.strip().startswith('[') and ':' in s):
                add(s, name)
extra = open('/tmp/stixwork/extra.txt').read().split('\n') if len(sys.argv) > 1 else []
for e in extra:
    if e.startswith('#') or e == '':
        continue
    add(json.loads(e), 'edge')
with open('/tmp/stixwork/raw.jsonl', 'w') as out:
    for p, src in seen.items():
        out.write(json.dumps({'pattern': p, 'source': src}) + '\n')
print(len(seen))
