"""Patterns per second of the reference validator (stix2-patterns `validate(p, '2.1')`), in CPU time and
wall time, on the typical patterns written by bench_inputs.py and on the labelled corpus.
Usage: /tmp/stixvenv/bin/python reference_bench.py [/tmp/stixwork/typical_2k.txt]"""
import json, os, resource, sys, time

from stix2patterns.validator import validate

here = os.path.dirname(os.path.abspath(__file__))
typical_path = sys.argv[1] if len(sys.argv) > 1 else '/tmp/stixwork/typical_2k.txt'
corpus = [json.loads(l)['pattern'] for l in open(os.path.join(here, 'labelled.jsonl'))]
corpus = [p for p in corpus if p.strip()]  # the empty pattern crashes the reference
typical = [l.rstrip('\n') for l in open(typical_path)]


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


for name, pats in [('typical', typical), ('corpus', corpus)]:
    t, w, n = cpu(), time.time(), 0
    for _ in range(2):
        for p in pats:
            try:
                validate(p, '2.1')
            except Exception:
                pass
            n += 1
    c = cpu() - t
    print(name, n, 'patterns', 'cpu %.2fs' % c, '%.0f/s cpu' % (n / c), '%.0f/s wall' % (n / (time.time() - w)))
