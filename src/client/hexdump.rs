//! A canonical hex dump (`hexdump -C` layout), for `echo-client send --hex`,
//! so binary echoes can be read on any terminal.

use std::fmt::Write;

pub(crate) fn hexdump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (row, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x} ", row * 16);
        for column in 0..16 {
            if column == 8 {
                out.push(' ');
            }
            match chunk.get(column) {
                Some(byte) => {
                    let _ = write!(out, " {byte:02x}");
                }
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    let _ = writeln!(out, "{:08x}", bytes.len());
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_hexdump_c() {
        let dump = super::hexdump(b"Hello, world\x00\x01\xff tail!");
        assert_eq!(
            dump,
            "00000000  48 65 6c 6c 6f 2c 20 77  6f 72 6c 64 00 01 ff 20  |Hello, world... |\n\
             00000010  74 61 69 6c 21                                    |tail!|\n\
             00000015\n"
        );
    }
}
