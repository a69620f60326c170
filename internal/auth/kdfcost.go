package auth

import (
	"encoding/asn1"
	"math/big"
)

// Password-based key derivation makes the file, not us, choose how much CPU
// and memory decoding costs: neither go-pkcs12 nor pkcs8 bounds the
// iteration count or the scrypt parameters. A PKCS#12 with 2^31 iterations
// would hold a reconcile worker for tens of minutes on every retry, and
// scrypt with a large N would exhaust memory. So the DER is walked before it
// is decoded, and every key-derivation parameter that can be seen without
// decrypting is bounded.
//
// What this cannot see: a key bag nested inside an encrypted safe of a
// PKCS#12 file is only visible after decryption, inside go-pkcs12. Common
// tools (OpenSSL, Windows, Java keytool, go-pkcs12 itself) put the key bag
// in a plain safe, where it is checked.
const (
	// maxKDFIterations is far above what tools write (OpenSSL 2048, keytool
	// 10000, OWASP's PBKDF2-SHA256 advice 600000) and costs under a second.
	maxKDFIterations = 1_000_000
	// maxScryptMemory bounds 128·N·r, the bytes scrypt allocates; OpenSSL's
	// default (N=16384, r=8) needs 16 MiB.
	maxScryptMemory = 32 << 20
	// maxScryptWork bounds 128·N·r·p, proportional to scrypt's CPU time.
	maxScryptWork = 64 << 20
	// maxKDFKeyLength bounds the PBKDF2 key length: the work grows with it,
	// and no cipher here needs more than 32 bytes.
	maxKDFKeyLength = 64
	// maxDERDepth is deeper than any PKCS#12 or PKCS#8 structure (about 16).
	maxDERDepth = 32
)

var (
	oidPKCS5       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5}
	oidPBKDF2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidPBES2       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBMAC1      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 14}
	oidPKCS12PBE   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1}
	oidScrypt      = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}
	bigMaxKDFIters = big.NewInt(maxKDFIterations)
)

// checkKDFCost returns a problem when der holds a key-derivation parameter
// above the limits, or "" otherwise. Input that is not DER is left to the
// real decoder to reject.
func checkKDFCost(der []byte) string {
	return walkDER(der, 0)
}

func walkDER(data []byte, depth int) string {
	if depth > maxDERDepth {
		return "the file is nested too deeply"
	}
	for len(data) > 0 {
		var v asn1.RawValue
		rest, err := asn1.Unmarshal(data, &v)
		if err != nil {
			return ""
		}
		if p := checkDERValue(v, depth); p != "" {
			return p
		}
		data = rest
	}
	return ""
}

func checkDERValue(v asn1.RawValue, depth int) string {
	switch {
	case v.IsCompound:
		children, ok := splitDER(v.Bytes)
		if !ok {
			return ""
		}
		if v.Class == asn1.ClassUniversal && v.Tag == asn1.TagSequence {
			if p := checkSequence(children); p != "" {
				return p
			}
		}
		for _, c := range children {
			if p := checkDERValue(c, depth+1); p != "" {
				return p
			}
		}
	case v.Class == asn1.ClassUniversal && v.Tag == asn1.TagOctetString:
		// PKCS#12 carries its safes as DER inside OCTET STRINGs. Encrypted
		// content is random bytes, which almost never parse as DER in full,
		// so only contents that do are walked.
		if _, ok := splitDER(v.Bytes); ok && len(v.Bytes) > 0 {
			return walkDER(v.Bytes, depth+1)
		}
	}
	return ""
}

// checkSequence recognises the structures that carry KDF parameters: an
// AlgorithmIdentifier of a PKCS#5/PKCS#12 PBE scheme, PBKDF2 or scrypt, and
// the PKCS#12 MacData.
func checkSequence(c []asn1.RawValue) string {
	// MacData ::= SEQUENCE { mac DigestInfo, macSalt OCTET STRING, iterations INTEGER }
	if len(c) == 3 && isUniversal(c[0], asn1.TagSequence) && isUniversal(c[1], asn1.TagOctetString) && isUniversal(c[2], asn1.TagInteger) {
		return checkIterations(c[2])
	}
	if len(c) != 2 || !isUniversal(c[0], asn1.TagOID) || !isUniversal(c[1], asn1.TagSequence) {
		return ""
	}
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(c[0].FullBytes, &oid); err != nil {
		return ""
	}
	params, ok := splitDER(c[1].Bytes)
	if !ok {
		return ""
	}
	switch {
	case oid.Equal(oidScrypt):
		return checkScrypt(params)
	case oid.Equal(oidPBKDF2):
		// PBKDF2-params ::= SEQUENCE { salt, iterationCount INTEGER,
		//   keyLength INTEGER OPTIONAL, prf AlgorithmIdentifier DEFAULT }
		if len(params) < 2 || !isUniversal(params[1], asn1.TagInteger) {
			return ""
		}
		if p := checkIterations(params[1]); p != "" {
			return p
		}
		if len(params) > 2 && isUniversal(params[2], asn1.TagInteger) {
			n, ok := derInt(params[2])
			if !ok || n.Sign() <= 0 || n.Cmp(big.NewInt(maxKDFKeyLength)) > 0 {
				return "the key derivation asks for an unreasonable key length"
			}
		}
	case oid.Equal(oidPBES2), oid.Equal(oidPBMAC1):
		// Their parameters nest a PBKDF2 AlgorithmIdentifier, checked when
		// the walk reaches it.
	case hasPrefix(oid, oidPKCS12PBE), hasPrefix(oid, oidPKCS5):
		// pkcs-12PbeParams / PBEParameter ::= SEQUENCE { salt, iterations INTEGER }
		if len(params) == 2 && isUniversal(params[0], asn1.TagOctetString) && isUniversal(params[1], asn1.TagInteger) {
			return checkIterations(params[1])
		}
	}
	return ""
}

func checkIterations(v asn1.RawValue) string {
	n, ok := derInt(v)
	if !ok || n.Sign() < 0 || n.Cmp(bigMaxKDFIters) > 0 {
		return "the key derivation iteration count exceeds 1,000,000"
	}
	return ""
}

// checkScrypt bounds scrypt-params ::= SEQUENCE { salt OCTET STRING,
// costParameter N, blockSize r, parallelizationParameter p, keyLength OPTIONAL }.
func checkScrypt(params []asn1.RawValue) string {
	const problem = "the scrypt parameters exceed the memory or work limit"
	if len(params) < 4 {
		return ""
	}
	var nrp [3]int64
	for i := range nrp {
		n, ok := derInt(params[i+1])
		if !ok || !n.IsInt64() || n.Int64() <= 0 || n.Int64() > maxScryptWork {
			return problem
		}
		nrp[i] = n.Int64()
	}
	mem := 128 * nrp[0] * nrp[1] // each factor ≤ 2^26: no overflow
	if mem > maxScryptMemory || mem*nrp[2] > maxScryptWork {
		return problem
	}
	return ""
}

// splitDER parses data as a complete list of DER values.
func splitDER(data []byte) ([]asn1.RawValue, bool) {
	var out []asn1.RawValue
	for len(data) > 0 {
		var v asn1.RawValue
		rest, err := asn1.Unmarshal(data, &v)
		if err != nil {
			return nil, false
		}
		out = append(out, v)
		data = rest
	}
	return out, true
}

func isUniversal(v asn1.RawValue, tag int) bool {
	return v.Class == asn1.ClassUniversal && v.Tag == tag && v.IsCompound == (tag == asn1.TagSequence || tag == asn1.TagSet)
}

func derInt(v asn1.RawValue) (*big.Int, bool) {
	var n *big.Int // asn1 decodes INTEGER into a **big.Int
	if _, err := asn1.Unmarshal(v.FullBytes, &n); err != nil || n == nil {
		return nil, false
	}
	return n, true
}

func hasPrefix(oid, prefix asn1.ObjectIdentifier) bool {
	return len(oid) > len(prefix) && oid[:len(prefix)].Equal(prefix)
}
