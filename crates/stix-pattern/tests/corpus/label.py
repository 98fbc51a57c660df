import json, re, sys, time
from stix2patterns.validator import run_validator
from stix2patterns.v21.pattern import Pattern as P21
from stix2patterns.inspector import INDEX_STAR
rows = [json.loads(l) for l in open('/tmp/stixwork/raw.jsonl')]
def label(p, v):
    try:
        errs = run_validator(p, v)
    except Exception as e:
        return {'valid': 'crash', 'error': type(e).__name__ + ': ' + str(e)}
    if not errs:
        return {'valid': True}
    m = re.search(r'line (\d+):(\d+)', errs[0])
    d = {'valid': False, 'error': errs[0]}
    if m:
        d['line'] = int(m.group(1)); d['column'] = int(m.group(2))
    return d
def conv(x):
    if x is INDEX_STAR: return '*'
    return x
out = open(sys.argv[1], 'w')
for r in rows:
    p = r['pattern']
    r['v21'] = label(p, '2.1')
    r['v20'] = label(p, '2.0')
    if r['v21']['valid'] is True:
        try:
            d = P21(p).inspect()
            r['inspect21'] = {'comparisons': {k: [[[conv(c) for c in path], op, val] for path, op, val in v] for k, v in d.comparisons.items()},
                              'observation_ops': sorted(d.observation_ops), 'qualifiers': sorted(d.qualifiers)}
        except Exception as e:
            r['inspect21'] = 'crash'
    out.write(json.dumps(r, ensure_ascii=False) + '\n')
out.close()
