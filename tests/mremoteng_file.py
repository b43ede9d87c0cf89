"""Reads an mRemoteNG connections file the way mRemoteNG does, for tests/mremoteng.rs.

mRemoteNG (1.76 to its development branch) cannot be run here (it is a .NET
Windows program), so this follows its XmlConnectionsDeserializer and
AeadCryptographyProvider step by step and refuses what they would refuse:

    mremoteng_file.py read FILE
        checks FILE and prints its connections as JSON, one object each
    mremoteng_file.py decrypt CIPHERTEXT ITERATIONS PASSWORD
        prints what mRemoteNG decrypts CIPHERTEXT to (or fails as it does)

Needs the `cryptography` package (scripts/test.sh installs it into
target/ansible-venv).
"""

import base64
import hashlib
import json
import sys
import xml.etree.ElementTree as ElementTree

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# LegacyFullFileDecrypt: a file without exactly this text is taken for a
# fully encrypted one, and mRemoteNG asks for its password.
DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>'
# RootNodeInfo.DefaultPassword and XmlConnectionsDecryptor's check text.
DEFAULT_PASSWORD = "mR3m"
KNOWN_PLAIN_TEXT = "ThisIsNotProtected"
NAMESPACE = "{http://mremoteng.org}"

# Every attribute 1.76's GetConnectionInfoFromXml reads with
# `Attributes[NAME].Value` for ConfVersion 2.6 (mRemoteV1/Config/Serializers/
# ConnectionSerializers/Xml/XmlConnectionsDeserializer.cs at v1.76.20): one
# missing throws there, and every setting after it (Protocol and Port among
# them) keeps its RDP default.
READ_BY_1_76 = """
Name Descr Hostname DisplayWallpaper DisplayThemes CacheBitmaps Username Password Domain
ConnectToConsole RedirectDiskDrives RedirectPrinters RedirectPorts RedirectSmartCards Protocol Port
RedirectKeys PuttySession Colors Resolution RedirectSound InheritCacheBitmaps InheritColors
InheritDescription InheritDisplayThemes InheritDisplayWallpaper InheritIcon InheritPanel InheritPort
InheritProtocol InheritPuttySession InheritRedirectDiskDrives InheritRedirectKeys InheritRedirectPorts
InheritRedirectPrinters InheritRedirectSmartCards InheritRedirectSound InheritResolution
InheritUseConsoleSession InheritDomain InheritPassword InheritUsername Icon Panel Connected
ICAEncryptionStrength InheritICAEncryptionStrength PreExtApp PostExtApp InheritPreExtApp
InheritPostExtApp VNCCompression VNCEncoding VNCAuthMode VNCProxyType VNCProxyIP VNCProxyPort
VNCProxyUsername VNCProxyPassword VNCColors VNCSmartSizeMode VNCViewOnly InheritVNCCompression
InheritVNCEncoding InheritVNCAuthMode InheritVNCProxyType InheritVNCProxyIP InheritVNCProxyPort
InheritVNCProxyUsername InheritVNCProxyPassword InheritVNCColors InheritVNCSmartSizeMode
InheritVNCViewOnly RDPAuthenticationLevel InheritRDPAuthenticationLevel RenderingEngine MacAddress
InheritRenderingEngine InheritMacAddress UserField InheritUserField ExtApp InheritExtApp
RDGatewayUsageMethod RDGatewayHostname RDGatewayUseConnectionCredentials RDGatewayUsername
RDGatewayPassword RDGatewayDomain InheritRDGatewayUsageMethod InheritRDGatewayHostname
InheritRDGatewayUseConnectionCredentials InheritRDGatewayUsername InheritRDGatewayPassword
InheritRDGatewayDomain EnableFontSmoothing EnableDesktopComposition InheritEnableFontSmoothing
InheritEnableDesktopComposition UseCredSsp InheritUseCredSsp LoadBalanceInfo AutomaticResize
InheritLoadBalanceInfo InheritAutomaticResize SoundQuality InheritSoundQuality
""".split()
# The ones 1.76 reads with .NET's bool.Parse, which takes only "true" and
# "false" in any case (not the schema's "1" and "0").
BOOLEANS = {
    name
    for name in READ_BY_1_76
    if name.startswith("Inherit") or name in {
        "DisplayWallpaper", "DisplayThemes", "CacheBitmaps", "ConnectToConsole", "RedirectDiskDrives",
        "RedirectPrinters", "RedirectPorts", "RedirectSmartCards", "RedirectKeys", "Connected",
        "VNCViewOnly", "EnableFontSmoothing", "EnableDesktopComposition", "UseCredSsp", "AutomaticResize",
    }
}


def fail(message):
    print(f"mremoteng_file.py: {message}", file=sys.stderr)
    sys.exit(1)


def decrypt(ciphertext, iterations, password):
    """AeadCryptographyProvider.Decrypt: base64 of a 16-byte salt, a 16-byte
    nonce, then AES-256-GCM ciphertext and 16-byte tag, with the salt as
    associated data; the key is PBKDF2-HMAC-SHA1 of the password (BouncyCastle's
    Pkcs5S2ParametersGenerator), 256 bits. A wrong password fails the tag."""
    if iterations < 1000:
        fail(f"KdfIterations {iterations}: Pkcs5S2KeyGenerator refuses fewer than 1000")
    blob = base64.b64decode(ciphertext, validate=True)
    salt, nonce, sealed = blob[:16], blob[16:32], blob[32:]
    key = hashlib.pbkdf2_hmac("sha1", password.encode("ascii"), salt, iterations, 32)
    return AESGCM(key).decrypt(nonce, sealed, salt).decode("utf-8")


def parse_bool(node, name):
    value = node.get(name)
    if value.strip().lower() not in ("true", "false"):
        fail(f"node {node.get('Name')!r}: {name}={value!r} is not a .NET boolean")
    return value.strip().lower() == "true"


def check_node(node):
    missing = [name for name in READ_BY_1_76 if node.get(name) is None]
    if missing:
        fail(f"node {node.get('Name')!r} lacks what mRemoteNG 1.76 reads: {' '.join(missing)}")
    for name in BOOLEANS:
        parse_bool(node, name)
    if node.get("Type") not in ("Connection", "Container"):
        fail(f"node {node.get('Name')!r}: Type={node.get('Type')!r}")
    if node.get("Type") == "Container":
        if node.get("Expanded") is None:
            fail(f"container {node.get('Name')!r} lacks Expanded, which 1.76 reads")
        parse_bool(node, "Expanded")
    int(node.get("Port"))


def read(path):
    with open(path, "rb") as file:
        text = file.read()
    if DECLARATION not in text:
        fail("no exact XML declaration: mRemoteNG would take the file for an encrypted one")
    # Comments kept: mRemoteNG takes every child of a node for a node, and
    # one without attributes breaks the load.
    parser = ElementTree.XMLParser(target=ElementTree.TreeBuilder(insert_comments=True, insert_pis=True))
    parser.feed(text)
    root = parser.close()
    for parent in root.iter():
        strays = [child.tag for child in parent if child.tag != "Node"]
        if strays:
            fail(f"{parent.get('Name')!r} holds something other than nodes: {strays}")
    if root.tag != NAMESPACE + "Connections":
        fail(f"the root is {root.tag}")
    if float(root.get("ConfVersion").replace(",", ".")) != 2.6:
        fail(f"ConfVersion {root.get('ConfVersion')}")
    if (root.get("EncryptionEngine"), root.get("BlockCipherMode")) != ("AES", "GCM"):
        fail("not AES-GCM")
    if root.get("FullFileEncryption").lower() != "false":
        fail("FullFileEncryption is on")
    protected = root.get("Protected")
    if protected is None:
        fail("the root lacks Protected: mRemoteNG throws on open and on import")
    plain = decrypt(protected, int(root.get("KdfIterations")), DEFAULT_PASSWORD)
    if plain != KNOWN_PLAIN_TEXT:
        fail(f"Protected decrypts to {plain!r}: mRemoteNG would ask for a password")
    connections = []
    for node in root.iter("Node"):
        check_node(node)
        if node.get("Type") == "Connection":
            connections.append({
                "name": node.get("Name"),
                "hostname": node.get("Hostname"),
                "port": int(node.get("Port")),
                "username": node.get("Username"),
                "protocol": node.get("Protocol"),
                "panel": node.get("Panel"),
                "putty_session": node.get("PuttySession"),
                "description": node.get("Descr"),
            })
    print(json.dumps(connections))


def main():
    if sys.argv[1:2] == ["read"] and len(sys.argv) == 3:
        read(sys.argv[2])
    elif sys.argv[1:2] == ["decrypt"] and len(sys.argv) == 5:
        print(decrypt(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
    else:
        fail("usage: read FILE | decrypt CIPHERTEXT ITERATIONS PASSWORD")


main()
