#!/usr/bin/env python3
"""Signed operations made by an implementation lintel did not write: PyJWT + cryptography.

The integration tests (signed.rs) use this to make Ed25519 keys, sign operations (JWS with
the x5c chain lintel returned), forge bad ones (alg none, HS256 keyed with the public key,
tampered payloads, self-signed chains) and make RS256 OpenID Connect ID tokens.

Every command takes JSON and answers JSON. Two ways to call it:

    python3 signed_ops.py keygen
    python3 signed_ops.py sign --key PEM --x5c '["..."]' --claims '{"iss": ...}' [--alg none]
    python3 signed_ops.py batch < '[{"cmd": "keygen"}, {"cmd": "sign", "key": ..., ...}]'

`batch` answers a JSON list, one answer per request, so a test pays Python's start-up once.

Needs: pip install PyJWT cryptography
"""

import argparse
import base64
import datetime
import json
import sys

try:
    import jwt
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
    from cryptography.x509.oid import NameOID
except ImportError as error:  # pragma: no cover - the message is the point
    sys.stderr.write(f"signed_ops.py needs PyJWT and cryptography (pip install PyJWT cryptography): {error}\n")
    sys.exit(3)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact_json(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def load_ed25519(pem: str) -> ed25519.Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SystemExit("not an Ed25519 private key")
    return key


def raw_public(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# --- commands -----------------------------------------------------------------------------


def keygen(_req):
    """A fresh Ed25519 key: private PEM (PKCS#8), public key as standard base64 and hex."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = raw_public(key)
    return {"private_pem": pem, "public_b64": base64.b64encode(public).decode(), "public_hex": public.hex()}


def sign(req):
    """A compact JWS of `claims`. alg EdDSA (PyJWT, the normal case), none (PyJWT if it will,
    else by hand) or HS256 keyed with the raw bytes of `hmac_key_b64`. `x5c` is put in the
    header unchanged when given."""
    claims = req["claims"]
    alg = req.get("alg", "EdDSA")
    headers = dict(req.get("headers") or {})
    if req.get("x5c") is not None:
        headers["x5c"] = req["x5c"]
    if alg == "EdDSA":
        token = jwt.encode(claims, load_ed25519(req["key"]), algorithm="EdDSA", headers=headers)
    elif alg == "none":
        try:
            token = jwt.encode(claims, None, algorithm="none", headers=headers)
        except Exception:  # PyJWT may refuse: build it by hand, empty signature
            header = {"alg": "none", "typ": "JWT", **headers}
            token = f"{b64url(compact_json(header))}.{b64url(compact_json(claims))}."
    elif alg == "HS256":
        secret = base64.b64decode(req["hmac_key_b64"])
        token = jwt.encode(claims, secret, algorithm="HS256", headers=headers)
    else:
        raise SystemExit(f"unknown alg {alg!r}")
    return {"token": token}


def sign_raw(req):
    """A JWS over exactly these bytes: `header` (a JSON object, or `header_text` verbatim) and
    `payload_text` verbatim (or `payload_segment`, used as the encoded segment as it is, even
    if it is not base64url), signed with the Ed25519 key; for payloads PyJWT would not write
    (not JSON, not base64url)."""
    header = req.get("header_text")
    if header is None:
        header = json.dumps(req["header"], separators=(",", ":"))
    payload = req.get("payload_segment")
    if payload is None:
        payload = b64url(req["payload_text"].encode())
    signing_input = f"{b64url(header.encode())}.{payload}"
    signature = load_ed25519(req["key"]).sign(signing_input.encode())
    return {"token": f"{signing_input}.{b64url(signature)}"}


def tamper(req):
    """The token with its payload's claims changed by `set` (merged), header and signature kept."""
    header, payload, signature = req["token"].split(".")
    claims = json.loads(b64url_decode(payload))
    claims.update(req["set"])
    return {"token": f"{header}.{b64url(compact_json(claims))}.{signature}"}


def decode(req):
    """Header and claims of a token, without verifying anything."""
    return {
        "header": jwt.get_unverified_header(req["token"]),
        "claims": jwt.decode(req["token"], options={"verify_signature": False}),
    }


def rsa_keygen(req):
    """An RSA key for a fake OpenID provider: private PEM and the public JWK (with kid)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.pop("key_ops", None)  # as providers publish them: kty, n, e, kid, use, alg
    jwk.update({"kid": req.get("kid", "k1"), "use": "sig", "alg": "RS256"})
    return {"private_pem": pem, "jwk": jwk}


def id_token(req):
    """An RS256 ID token with `kid` in the header."""
    key = serialization.load_pem_private_key(req["key"].encode(), password=None)
    return {"token": jwt.encode(req["claims"], key, algorithm="RS256", headers={"kid": req["kid"]})}


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def fake_chain(req):
    """A chain lintel did not issue: a self-made root named like lintel's authority, and a
    leaf for `user_id` certifying `public_b64`, as x5c (standard base64 DER)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    root_key = ed25519.Ed25519PrivateKey.generate()
    root_name = _name("lintel signing authority")
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(root_key, None)
    )
    user_key = ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(req["public_b64"]))
    user_id = req["user_id"]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(user_id))
        .issuer_name(root_name)
        .public_key(user_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"urn:lintel:user:{user_id}")]),
            critical=False,
        )
        .sign(root_key, None)
    )
    der = [c.public_bytes(serialization.Encoding.DER) for c in (leaf, root)]
    return {"x5c": [base64.b64encode(d).decode() for d in der]}


def _verifies(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
    try:
        issuer.public_key().verify(cert.signature, cert.tbs_certificate_bytes)
        return True
    except Exception:
        return False


def chain_info(req):
    """What a certificate chain (x5c) says, read with cryptography's X.509 parser."""
    certs = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in req["x5c"]]
    leaf = certs[0]
    info = {
        "length": len(certs),
        "leaf_subject_cn": [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)],
        "leaf_public_b64": base64.b64encode(
            leaf.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        ).decode(),
        "leaf_not_after": int(leaf.not_valid_after_utc.timestamp()),
        "leaf_not_before": int(leaf.not_valid_before_utc.timestamp()),
        "leaf_signature_is_ed25519": leaf.signature_algorithm_oid.dotted_string == "1.3.101.112",
        "leaf_uris": [],
        "leaf_is_ca": None,
    }
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        info["leaf_uris"] = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        pass
    try:
        info["leaf_is_ca"] = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        pass
    if len(certs) > 1:
        root = certs[1]
        info["root_subject_cn"] = [a.value for a in root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        info["root_self_signed"] = _verifies(root, root)
        info["leaf_signed_by_root"] = _verifies(root, leaf)
        info["leaf_issuer_is_root_subject"] = leaf.issuer == root.subject
        info["root_public_b64"] = base64.b64encode(
            root.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        ).decode()
    return info


COMMANDS = {
    "keygen": keygen,
    "sign": sign,
    "sign-raw": sign_raw,
    "tamper": tamper,
    "decode": decode,
    "rsa-keygen": rsa_keygen,
    "id-token": id_token,
    "fake-chain": fake_chain,
    "chain-info": chain_info,
}


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=sorted([*COMMANDS, "batch"]))
    # Arguments of the single commands; JSON-valued ones are parsed.
    single = ("key", "kid", "alg", "hmac-key-b64", "token", "user-id", "public-b64")
    for name in (*single, "payload-text", "payload-segment", "header-text"):
        parser.add_argument(f"--{name}")
    for name in ("x5c", "claims", "headers", "header", "set"):
        parser.add_argument(f"--{name}", type=json.loads)
    args = parser.parse_args(argv)
    if args.command == "batch":
        requests = json.load(sys.stdin)
        answers = []
        for req in requests:
            answers.append(COMMANDS[req["cmd"]](req))
        json.dump(answers, sys.stdout)
    else:
        req = {k: v for k, v in vars(args).items() if v is not None and k != "command"}
        json.dump(COMMANDS[args.command](req), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
