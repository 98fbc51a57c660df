"""Writes the stix_check / reference benchmark inputs into a directory (default /tmp/stixwork):
typical_1m.txt (1,000,000 typical indicator patterns), mixed_1m.txt (half typical, half corpus) and
typical_2k.txt (the 2,000 distinct typical patterns)."""
import json, os, random, sys

out_dir = sys.argv[1] if len(sys.argv) > 1 else '/tmp/stixwork'
os.makedirs(out_dir, exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))
random.seed(4)
corpus = [json.loads(l)['pattern'] for l in open(os.path.join(here, 'labelled.jsonl'))]
corpus = [p for p in corpus if '\n' not in p and '\r' not in p and len(p) < 2000]


def hx(n):
    return ''.join(random.choice('0123456789abcdef') for _ in range(n))


typ = []
for i in range(2000):
    typ.append([
        f"[file:hashes.'SHA-256' = '{hx(64)}']", f"[file:hashes.'SHA-256' = '{hx(64)}']",
        f"[file:hashes.MD5 = '{hx(32)}']", f"[ipv4-addr:value = '198.51.{i % 256}.{(i * 7) % 256}']",
        f"[domain-name:value = 'host{i}.evil-example.com']", f"[url:value = 'http://evil-example.com/a/{i}?q=1']",
        f"[file:hashes.'SHA-256' = '{hx(64)}' OR file:hashes.MD5 = '{hx(32)}']",
        f"[email-addr:value = 'user{i}@example.org']",
        f"[network-traffic:dst_ref.value ISSUBSET '10.{i % 256}.0.0/16' AND network-traffic:dst_port = 443]",
        f"([file:name = 'dropper{i}.exe'] FOLLOWEDBY [process:command_line MATCHES '^cmd\\\\.exe /c']) WITHIN 600 SECONDS",
    ][i % 10])
with open(os.path.join(out_dir, 'typical_1m.txt'), 'w') as f:
    for i in range(1_000_000):
        f.write(typ[i % len(typ)] + '\n')
with open(os.path.join(out_dir, 'mixed_1m.txt'), 'w') as f:
    for i in range(1_000_000):
        f.write((corpus[i % len(corpus)] if i % 2 else typ[i % len(typ)]) + '\n')
with open(os.path.join(out_dir, 'typical_2k.txt'), 'w') as f:
    for t in typ:
        f.write(t + '\n')
