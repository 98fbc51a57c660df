import json
E = r'''
[file:size = 25536]
[a:b]
[a = 1]
[AND:b = 1]
[a:true = 1]
[a:b.AND = 1]
[a:b.'AND' = 1]
[ANDROID:b = 1]
[AND-x:b = 1]
[é:b = 1]
[a:b == 1]
[a:b <> 1]
[a:b =< 1]
[a:b => 1]
[a:b = 01]
[a:b = +5]
[a:b = -5]
[a:b = -0]
[a:b = .5]
[a:b = -.5]
[a:b = 00.5]
[a:b = 1.]
[a:b = 1e5]
[a:b = 1.5.5]
[a:b = 'a\nb']
[a:b = 'a\\b']
[a:b = 'a\'b']
[a:b = 'a''b']
[a:b = "a"]
[a:b = 'unterminated]
[a:b = h'']
[a:b = h'0a']
[a:b = h'0A']
[a:b = h'0']
[a:b = H'0a']
[a:b = b'']
[a:b = b'YQ']
[a:b = b'YQ==']
[a:b = b'YWI=']
[a:b = b'YWJj']
[a:b = b'Y Q==']
[a:b = t'2024-02-30T00:00:00Z']
[a:b = t'2024-13-01T00:00:00Z']
[a:b = t'2024-01-01T24:00:00Z']
[a:b = t'2024-01-01T23:59:60Z']
[a:b = t'2024-01-01T23:59:61Z']
[a:b = t'2024-01-01T00:00:00.123456789Z']
[a:b = t'2024-01-01t00:00:00Z']
[a:b = t'2024-01-01T00:00:00z']
[a:b = t'2024-01-01T00:00:00+00:00']
[a:b = t'not-a-timestamp']
[a:b = true]
[a:b = false]
[a:b = TRUE]
[a:b = True]
[a:b > true]
[a:b LIKE 1]
[a:b LIKE 'a%']
[a:b MATCHES 'a.*']
[a:b ISSUBSET '10.0.0.0/8']
[a:b ISSUPERSET '10.0.0.0/8']
[a:b IN (1, 2)]
[a:b IN ()]
[a:b IN (1, 2,)]
[a:b IN ((1))]
[a:b IN (1, 'a')]
[a:b IN 1]
[NOT a:b = 1]
[a:b NOT NOT = 1]
[a:b NOT EXISTS]
[EXISTS a:b]
[NOT EXISTS a:b]
[EXISTS a:b = 1]
[EXISTS a:b AND a:c = 1]
[a:b NOT = 1]
[a:b NOT IN (1)]
[a:b NOT LIKE 'x']
[a:b NOT MATCHES 'x']
[a:b NOT ISSUBSET '1.2.3.4']
[a:b NOT > 5]
[foo:bar=1]
[a:b IN(443,6443)]
[a : b . c = 1]
[x509-certificate:a = 1]
[a--b:c = 1]
[a-:b = 1]
[_a:_b = 1]
[A:B = 1]
[x:y = 1]
[a:b.'' = 1]
[a:b.'c.d' = 1]
[a:b-c = 1]
[a:'b-c' = 1]
[a:b[0] = 1]
[a:b[+1] = 1]
[a:b[*] = 1]
[a:b[01] = 1]
[a:b[1.5] = 1]
[a:b['x'] = 1]
[a:b[] = 1]
[a:b[*].c = 1]
[a:b.5 = 1]
[a:b = 1] ;
[a:b = 1] # x
[a:b = 1] // comment
[a:b = 1] /* c */
/* c */ [a:b = 1]
[a:b /* inline */ = 1]
[a:b = 1] /* unterminated
( [a:b = 1])
(([a:b = 1]))
([a:b = 1]
[a:b = 1])
[a:b = 1]]
[[a:b = 1]]
[a:b = 1] AND [c:d = 2]
[a:b = 1] OR [c:d = 2]
[a:b = 1] FOLLOWEDBY [c:d = 2]
[a:b = 1] and [c:d = 2]
[a:b = 1] AND
[a:b = 1] WITHIN 5 SECONDS
[a:b = 1] WITHIN 5.5 SECONDS
[a:b = 1] WITHIN 0 SECONDS
[a:b = 1] WITHIN -5 SECONDS
[a:b = 1] WITHIN +5 SECONDS
[a:b = 1] WITHIN 5 MINUTES
[a:b = 1] WITHIN 5 HOURS
[a:b = 1] within 5 seconds
[a:b = 1] REPEATS 5 TIMES
[a:b = 1] REPEATS 0 TIMES
[a:b = 1] REPEATS 1.5 TIMES
[a:b = 1] REPEATS -1 TIMES
[a:b = 1] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'
[a:b = 1] START t'2016-07-01T00:00:00Z' STOP t'2016-06-01T00:00:00Z'
[a:b = 1] START t'2016-07-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'
[a:b = 1] START '2016-06-01T00:00:00Z' STOP '2016-07-01T00:00:00Z'
[a:b = 1] WITHIN 5 SECONDS WITHIN 6 SECONDS
[a:b = 1] REPEATS 2 TIMES WITHIN 5 SECONDS REPEATS 3 TIMES
([a:b = 1] REPEATS 2 TIMES REPEATS 3 TIMES)
([a:b = 1]) WITHIN 5 SECONDS WITHIN 6 SECONDS
([a:b = 1] REPEATS 2 TIMES) REPEATS 2 TIMES
[a:b = 1] REPEATS 2 TIMES WITHIN 5 SECONDS START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'
[a:b = 1] FOLLOWEDBY [b:c = 2] REPEATS 5 TIMES
[a:b = 1] AND [b:c = 2] WITHIN 5 SECONDS
([a:b = 1] AND [b:c = 2]) WITHIN 300 SECONDS
[a:b = 1] LAST 5 SECONDS
[a:b = 1 AND c:d = 2]
[a:b = 1 OR c:d = 2 AND e:f = 3]
[(a:b = 1 OR c:d = 2) AND e:f = 3]
[a:b = 1 AND (c:d = 2]
[a:b = 1 ^ 2]
[a:b = 1 + 2]
[a:b = 'x' / 2]
[a:b = 1] [c:d = 2]
[]
[ ]
(
((((
[a:b = 1] AND ([c:d = 2] OR [e:f = 3]) FOLLOWEDBY [g:h = 4]
[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']
[file:hashes.MD5 = 'D41D8CD98F00B204E9800998ECF8427E']
[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427']
[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427ez']
[file:hashes.md5 = 'd41d8cd98f00b204e9800998ecf8427e']
[file:hashes.'md5' = 'nothex']
[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']
[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019']
[file:hashes.SHA256 = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']
[file:hashes.sha256 = 'xyz']
[file:hashes.SHA_256 = 'xyz']
[file:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']
[file:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd8070']
[file:hashes.'SHA-512' = 'cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e']
[file:hashes.'SHA3-256' = 'a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a']
[file:hashes.'SHA3-256' = 'nothex']
[file:hashes.SSDEEP = '3:AXGBicFlgVNhBGcL6wCrFQEv:AXGHsNhxLsr2C']
[file:hashes.SSDEEP = 'bad ssdeep with spaces']
[file:hashes.SSDEEP = 5]
[file:hashes.SSDEEP = h'ab']
[file:hashes.MD6 = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaazzz']
[file:hashes.MD6 = 'zz']
[file:hashes.TLSH = 'anything']
[file:hashes.'RIPEMD-160' = 'short']
[file:hashes.WHIRLPOOL = 'short']
[file:hashes.'SHA-224' = 'short']
[file:hashes.'SHA-384' = 'short']
[file:hashes.'SHA3-224' = 'short']
[file:hashes.'SHA3-384' = 'short']
[file:hashes.'SHA3-512' = 'short']
[file:hashes.MD5 != 'x']
[file:hashes.MD5 LIKE 'a%']
[file:hashes.MD5 IN ('d41d8cd98f00b204e9800998ecf8427e', 'd41d8cd98f00b204e9800998ecf8427f')]
[file:hashes.MD5 NOT = 'x']
[file:hashes.MD5 = h'd41d8cd98f00b204e9800998ecf8427e']
[file:hashes.MD5 = 1]
[file:hashes = 'x']
[file:hashes[*] = 'x']
[x509-certificate:hashes.MD5 = 'x']
[network-traffic:dst_ref.hashes.MD5 = 'x']
[file:hashes.'MD5' = 'd41d8cd98f00b204e9800998ecf8427e']
[EXISTS file:hashes.MD5]
[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e' OR file:hashes.'SHA-256' = 'bad']
[file:x.hashes.MD5 = 'x']
[ipv4-addr:value = '1.2.3.4' OR ipv4-addr:value = '5.6.7.8']
[domain-name:value = 'evil.com']
[url:value = 'http://evil.com/a?b=c']
[email-addr:value = 'a@b.c']
[windows-registry-key:key = 'HKEY_LOCAL_MACHINE\\Software']
[process:command_line MATCHES '^cmd\\.exe /c .*']
[network-traffic:dst_port = 443 AND network-traffic:protocols[*] = 'tcp']
[network-traffic:src_ref.type = 'ipv4-addr' AND network-traffic:src_ref.value = '1.2.3.4']
[file:name = 'a'] AND [file:name = 'b'] OR [file:name = 'c'] FOLLOWEDBY [file:name = 'd']
[file:name = 'a' OR file:name = 'b' OR file:name = 'c' AND file:size > 5]
[a:b = 1] AND ([c:d = 2] AND [e:f = 3])
[a:b = 1] WITHIN 5 SECONDS AND [c:d = 2]
[a:b = 1] START t'2016-06-01T00:00:00Z'
[a:b = 1] STOP t'2016-06-01T00:00:00Z'
[a:b = 1] START t'2016-06-01T00:00:00Z' STOP
[a:b = 'é' AND a:c = '中文']
[a:b = 'tab	inside']
	[a:b = 1]
 [a:b = 1]
[a:b = 1]  
[a:b = 1] AND [a:b = 1] AND [a:b = 1] AND [a:b = 1]
[a:b = 99999999999999999999]
[a:b[99999999999999999999] = 1]
[a:b = 1] REPEATS 99999999999999999999 TIMES
[a:b = 1] WITHIN 99999999999999999999 SECONDS
[a:b = 1] WITHIN .5 SECONDS
[a:b = 1] WITHIN 00.5 SECONDS
[a:b = -1.5]
[a:b < -1]
[a:b <= 'x']
[a:b >= t'2020-01-01T00:00:00Z']
[a:b < h'ff']
[a:b > b'YQ==']
[a:b = 1]WITHIN 5 SECONDS
[a:b = 1]AND[c:d = 2]
[a:b = 1] FOLLOWEDBY
[a:b = 1] OR OR [c:d = 2]
[a:b = 1 OR]
[a:b = 1 AND AND c:d = 2]
[a:b = 1 and c:d = 2]
[a:b = 1 or c:d = 2]
[a:b not = 1]
[a:b = 1] followedby [c:d = 2]
[a:b = 1] Within 5 SECONDS
[a:b LIKE 'x' ESCAPE '\\']
[a:b MATCHES "x"]
[a:b = 1] WITHIN 5 SECONDS REPEATS 3 TIMES
[a:b[-1] = 1]
[file:hashes[0] = 'x']
[a:b = '']
[a:b = '\\']
[a:b = '\']
[a:b = 'x\ y']
[a:b = 'x] AND [c:d = ''] 
[a:'b'.'c' = 1]
[a:'b'[0] = 1]
[a:b.c.d.e.f.g = 1]
[artifact:payload_bin = b'dGVzdA==']
[artifact:payload_bin = h'74657374']
[file:mtime > t'2016-01-01T00:00:00Z' AND file:mtime < t'2016-02-01T00:00:00Z']
[EXISTS windows-registry-key:values]
[NOT EXISTS a:b OR EXISTS a:c]
[a:b EXISTS]
[EXISTS a:b.'c-d'[*]]
[a:b = 1] AND NOT [c:d = 2]
[a:b = 1 AND NOT c:d = 2]
'''
out = []
for line in E.strip('\n').split('\n'):
    out.append(line)
# deep nesting and long inputs
out += ['(' * 60 + '[a:b = 1]' + ')' * 60, '[' + '(' * 60 + 'a:b = 1' + ')' * 60 + ']', '(' * 200 + '[a:b = 1]' + ')' * 200, '[' * 50, '[a:b = 1]' + ' OR [a:b = 2]' * 300, "[file:hashes.MD5 = '" + 'a' * 32 + "'" + (" OR file:hashes.MD5 = '" + 'b' * 32 + "'") * 200 + ']', '']
with open('/tmp/stixwork/extra.txt', 'w') as f:
    for o in out:
        f.write(json.dumps(o) + '\n')
print(len(out))
