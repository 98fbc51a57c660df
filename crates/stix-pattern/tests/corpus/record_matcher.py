import json, copy
import stix2matcher.matcher as m
_orig = m.match
OUT = open('/tmp/stixwork/match-2.1.jsonl', 'w')  # copied to tests/corpus/ afterwards
def rec(pattern, observed_data_sdos, verbose=False, stix_version='2.0'):
    data = copy.deepcopy(observed_data_sdos)
    try:
        r = _orig(pattern, observed_data_sdos, verbose, stix_version)
        outcome = 'match' if r else 'nomatch'
    except Exception as e:
        outcome = 'error'
        r = type(e).__name__ + ': ' + str(e)
    if stix_version == '2.1':
        OUT.write(json.dumps({'pattern': pattern, 'observed_data': data, 'outcome': outcome, 'detail': r if outcome == 'error' else None}, default=str) + '\n')
        OUT.flush()
    if outcome == 'error':
        raise Exception(r) if not isinstance(r, str) else m.MatcherException(r)
    return r
m.match = rec
