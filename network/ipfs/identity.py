"""An Ed25519 libp2p identity for a new embedded kubo repository.

The library's ``CreateRepo`` gives a new repo a 2048-bit RSA peer key. libp2p signs
every pubsub message with the peer key and every receiver checks it, and an RSA
peer id is a hash, so each message also carries the 299-byte public key. At 24
nodes on two cores, RSA signing and checking took 6 % of all CPU (perf, kubo's
``core/crypto``), more than the nodes' own Python record checks. An Ed25519 key
signs about 30 times faster, and its peer id *is* the public key (the identity
multihash), so messages carry no key. kubo reads ``Identity`` from the config at
start, so a freshly created repo gets an Ed25519 identity written there before
its first start; an existing repo keeps its key (its peer id may be in other
people's bootstrap lists).

The encodings are libp2p's (peer-ids spec): the key protobuf is
``{1: KeyType (Ed25519 = 1), 2: bytes}``, where a private key's bytes are the
32-byte seed then the 32-byte public key; the peer id is the base58btc of the
identity multihash (code 0x00) of the public key's protobuf.
"""

from __future__ import annotations

import base64

import base58
from nacl.signing import SigningKey

# protobuf field 1 (varint) = KeyType.Ed25519, then field 2 (length-delimited) header
_ED25519_TYPE = b"\x08\x01"
_IDENTITY_MULTIHASH = 0x00


def _key_protobuf(data: bytes) -> bytes:
    return _ED25519_TYPE + b"\x12" + bytes([len(data)]) + data


def new_ed25519_identity() -> dict[str, str]:
    """A fresh identity as kubo's config holds it: ``{"PeerID", "PrivKey"}``."""
    signing = SigningKey.generate()
    public = bytes(signing.verify_key)
    public_pb = _key_protobuf(public)
    multihash = bytes([_IDENTITY_MULTIHASH, len(public_pb)]) + public_pb
    private_pb = _key_protobuf(bytes(signing) + public)
    return {
        "PeerID": base58.b58encode(multihash).decode("ascii"),
        "PrivKey": base64.b64encode(private_pb).decode("ascii"),
    }
