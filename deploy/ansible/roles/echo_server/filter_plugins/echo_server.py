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
        return {'toml_string': toml_string, 'local_target': local_target}
