package diode

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"math/bits"
)

// Shard is one packet on the diode: a fixed header, the Merkle proof that
// ties its payload to the block's signed root, and the payload (one data
// or parity shard of a Reed-Solomon block). Wire format: docs/wire/diode.md.
//
//	 0 version   1   Version
//	 1 k         1   data shards in the block (1..MaxShards)
//	 2 m         1   parity shards in the block (k+m <= MaxShards)
//	 3 index     1   this shard's position, < k+m (data first)
//	 4 flow      4   the configured flow id
//	 8 block     8   the block's sequence number, per sender
//	16 shardLen  2   payload bytes (equal in every shard of the block)
//	18 reserved  2   zero
//	20 root     16   Merkle root over the block's shards
//	36 sig      64   ed25519 signature by the sender's node key over
//	                 Label || 0x00 || header[0:36] with index zeroed
//	100 proof   16 × depth, depth = ceil(log2(k+m))
//	    payload shardLen
//
// A data shard's payload is a slot: a 2-byte big-endian tag (0: empty, 1 +
// n: an SDU of n bytes follows, EndTag: the flow ended) and the SDU,
// padded with zeros to shardLen.
type Shard []byte

// Sizes and limits of the format.
const (
	Version    = 1
	HeaderLen  = 100 // bytes before the proof
	HashLen    = 16  // a Merkle node: SHA-256 truncated to 128 bits
	SigLen     = 64
	MaxShards  = 128 // k+m
	MaxDepth   = 7   // ceil(log2(MaxShards))
	SlotHdrLen = 2
	EndTag     = 0xffff // a slot tag: the flow ended
	// Label is the domain of the block signatures (crypto/identity
	// SignLabeled).
	Label = "ouro/diode/v1"
)

const (
	offVersion  = 0
	offK        = 1
	offM        = 2
	offIndex    = 3
	offFlow     = 4
	offBlock    = 8
	offShardLen = 16
	offRoot     = 20
	offSig      = 36
	signedLen   = offSig // header bytes the signature covers
)

// depth returns the Merkle tree depth for n leaves: ceil(log2(n)).
func depth(n int) int {
	if n <= 1 {
		return 0
	}
	return bits.Len(uint(n - 1))
}

// ShardSize returns the length of a shard of a block of n shards whose
// payloads are shardLen bytes.
func ShardSize(n, shardLen int) int { return HeaderLen + depth(n)*HashLen + shardLen }

// IsValid reports whether s is a well-formed shard: the accessors may be
// used only after it returned true.
func (s Shard) IsValid() bool {
	if len(s) < HeaderLen || s[offVersion] != Version || s[18] != 0 || s[19] != 0 {
		return false
	}
	k, m := int(s[offK]), int(s[offM])
	if k < 1 || k+m > MaxShards || int(s[offIndex]) >= k+m {
		return false
	}
	return len(s) == ShardSize(k+m, int(binary.BigEndian.Uint16(s[offShardLen:])))
}

// K returns the number of data shards.
func (s Shard) K() int { return int(s[offK]) }

// M returns the number of parity shards.
func (s Shard) M() int { return int(s[offM]) }

// Index returns the shard's position in its block.
func (s Shard) Index() int { return int(s[offIndex]) }

// Flow returns the flow id.
func (s Shard) Flow() uint32 { return binary.BigEndian.Uint32(s[offFlow:]) }

// Block returns the block sequence number.
func (s Shard) Block() uint64 { return binary.BigEndian.Uint64(s[offBlock:]) }

// Root returns the Merkle root the shard claims.
func (s Shard) Root() []byte { return s[offRoot : offRoot+HashLen] }

// Sig returns the signature over the block's header and root.
func (s Shard) Sig() []byte { return s[offSig : offSig+SigLen] }

// Proof returns the sibling hashes from the leaf up.
func (s Shard) Proof() []byte {
	return s[HeaderLen : HeaderLen+depth(s.K()+s.M())*HashLen]
}

// Payload returns the shard's data or parity bytes.
func (s Shard) Payload() []byte { return s[HeaderLen+depth(s.K()+s.M())*HashLen:] }

// SignedMsg writes into dst (at least signedLen bytes) the header bytes
// the block signature covers: the first 36 with the index zeroed, so that
// every shard of a block carries the same signed message.
func (s Shard) SignedMsg(dst []byte) []byte {
	dst = append(dst[:0], s[:signedLen]...)
	dst[offIndex] = 0
	return dst
}

// putHeader writes a shard header (without signature and proof).
func putHeader(b []byte, k, m, index int, flow uint32, block uint64, shardLen int, root []byte) {
	b[offVersion] = Version
	b[offK] = byte(k)
	b[offM] = byte(m)
	b[offIndex] = byte(index)
	binary.BigEndian.PutUint32(b[offFlow:], flow)
	binary.BigEndian.PutUint64(b[offBlock:], block)
	binary.BigEndian.PutUint16(b[offShardLen:], uint16(shardLen))
	b[18], b[19] = 0, 0
	copy(b[offRoot:offRoot+HashLen], root)
}

// hasher computes leaf hashes with a reused SHA-256 and scratch space
// that lives as long as it does, so that hashing allocates nothing.
type hasher struct {
	h   hash.Hash
	pre [2]byte
	sum [sha256.Size]byte
}

func newHasher() *hasher { return &hasher{h: sha256.New()} }

// leaf hashes shard index's payload: SHA-256(0x00 || index || payload),
// truncated.
func (x *hasher) leaf(dst *[HashLen]byte, index int, payload []byte) {
	x.h.Reset()
	x.pre = [2]byte{0, byte(index)}
	x.h.Write(x.pre[:])
	x.h.Write(payload)
	x.h.Sum(x.sum[:0])
	copy(dst[:], x.sum[:HashLen])
}

// node hashes two children: SHA-256(0x01 || left || right), truncated.
func node(dst *[HashLen]byte, left, right []byte) {
	var in [1 + 2*HashLen]byte
	in[0] = 1
	copy(in[1:], left)
	copy(in[1+HashLen:], right)
	sum := sha256.Sum256(in[:])
	copy(dst[:], sum[:HashLen])
}

// tree is a block's Merkle tree: leaves padded with zero hashes to a
// power of two, level 0 the leaves. Reused from block to block.
type tree struct {
	levels [MaxDepth + 1][][HashLen]byte
}

// build computes the tree over n leaf hashes already in t.levels[0][:n].
func (t *tree) build(n int) {
	d := depth(n)
	width := 1 << d
	for len(t.levels[0]) < width {
		t.levels[0] = append(t.levels[0], [HashLen]byte{})
	}
	for i := n; i < width; i++ {
		t.levels[0][i] = [HashLen]byte{}
	}
	for l := 1; l <= d; l++ {
		w := width >> l
		for len(t.levels[l]) < w {
			t.levels[l] = append(t.levels[l], [HashLen]byte{})
		}
		for i := range w {
			node(&t.levels[l][i], t.levels[l-1][2*i][:], t.levels[l-1][2*i+1][:])
		}
	}
}

// root returns the root of a tree built over n leaves.
func (t *tree) root(n int) []byte { return t.levels[depth(n)][0][:] }

// proof appends the sibling hashes of leaf i, from the bottom up.
func (t *tree) proof(dst []byte, n, i int) []byte {
	for l := range depth(n) {
		dst = append(dst, t.levels[l][i^1][:]...)
		i >>= 1
	}
	return dst
}

// verifyProof reports whether s's payload and proof hash up to s's root.
// It allocates nothing.
func (x *hasher) verifyProof(s Shard) bool {
	var h, sib [HashLen]byte
	i := s.Index()
	x.leaf(&h, i, s.Payload())
	p := s.Proof()
	for off := 0; off < len(p); off += HashLen {
		copy(sib[:], p[off:off+HashLen])
		if i&1 == 0 {
			node(&h, h[:], sib[:])
		} else {
			node(&h, sib[:], h[:])
		}
		i >>= 1
	}
	return h == [HashLen]byte(s.Root())
}
