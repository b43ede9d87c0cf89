"""Filters for the echo_server role: values as the config and the check need them."""

import ipaddress

from ansible.errors import AnsibleFilterError

# TOML basic strings take every character as it is except these, which
# must be escaped: the quote, the backslash and the control characters.
# JSON's escapes are not the answer: JSON may write `\/`, and `\ud83d\ude00`
# for a character beyond U+FFFF, neither of which TOML accepts.
_SHORT_ESCAPES = {
    '"': '\\"',
    '\\': '\\\\',
    '\b': '\\b',
    '\t': '\\t',
    '\n': '\\n',
    '\f': '\\f',
    '\r': '\\r',
}


def _escape(char):
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if char < ' ' or char == '\x7f':
        return '\\u%04X' % ord(char)
    return char


def toml_string(value):
    """A TOML basic string ("...") that holds exactly `value`."""
    if not isinstance(value, str):
        raise AnsibleFilterError('toml_string: expected a string, got %r' % (value,))
    return '"%s"' % ''.join(_escape(char) for char in value)


def listen_entry(entry):
    """One `[server] listen` entry in TOML: "HOST:PORT" as a string, or a
    mapping with `address` and `proxy_protocol` as an inline table."""
    if isinstance(entry, str):
        return toml_string(entry)
    if not isinstance(entry, dict):
        raise AnsibleFilterError(
            'echo_server_listen: an entry is "HOST:PORT" or {address: "HOST:PORT", '
            'proxy_protocol: true}, not %r' % (entry,))
    unknown = sorted(set(entry) - {'address', 'proxy_protocol'})
    if unknown:
        raise AnsibleFilterError(
            'echo_server_listen: unknown key %s in %r; an entry has address and '
            'proxy_protocol' % (', '.join(unknown), entry))
    if not isinstance(entry.get('address'), str):
        raise AnsibleFilterError(
            'echo_server_listen: the entry %r needs address: "HOST:PORT"' % (entry,))
    proxy_protocol = entry.get('proxy_protocol', False)
    if not isinstance(proxy_protocol, bool):
        raise AnsibleFilterError(
            'echo_server_listen: proxy_protocol is true or false, not %r' % (proxy_protocol,))
    return '{ address = %s, proxy_protocol = %s }' % (
        toml_string(entry['address']), 'true' if proxy_protocol else 'false')


def plain_listen_address(listen):
    """The address of the first listen entry that a plain client can check
    (one without the PROXY protocol), or '' when every entry wants a PROXY
    header, which echo-client does not send."""
    for entry in listen:
        if isinstance(entry, str):
            return entry
        if not entry.get('proxy_protocol', False):
            return entry['address']
    return ''


def local_target(host, port):
    """HOST:PORT at which a host reaches its own service listening on
    host:port: a wildcard address is reached on the loopback address of its
    family, and an IPv6 address takes brackets."""
    host = str(host)
    if host.startswith('[') and host.endswith(']'):
        host = host[1:-1]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return '%s:%s' % (host, port)
    if address.is_unspecified:
        address = ipaddress.ip_address('::1' if address.version == 6 else '127.0.0.1')
    if address.version == 6:
        return '[%s]:%s' % (address, port)
    return '%s:%s' % (address, port)


class FilterModule:
    def filters(self):
        return {
            'toml_string': toml_string,
            'listen_entry': listen_entry,
            'plain_listen_address': plain_listen_address,
            'local_target': local_target,
        }
