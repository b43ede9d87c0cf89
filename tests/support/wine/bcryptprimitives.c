/*
 * A stand-in for Windows' bcryptprimitives.dll, for running echo-client.exe
 * under Wine in the tests only (tests/windows_client.rs); never shipped.
 *
 * Why: Rust's standard library (since 1.78) takes its random numbers, for
 * HashMap's keys, from ProcessPrng in bcryptprimitives.dll, which every
 * supported Windows has and Debian 12's Wine 8.0 lacks altogether: there
 * the exe dies before main with "Library bcryptprimitives.dll ... not
 * found". Wine, as Windows does, looks for a DLL in the exe's directory,
 * so this one, placed there, supplies ProcessPrng on top of RtlGenRandom
 * (SystemFunction036 in advapi32), which Wine has. scripts/test.sh builds
 * it with mingw-w64:
 *
 *   x86_64-w64-mingw32-gcc -shared -o bcryptprimitives.dll \
 *       bcryptprimitives.c -ladvapi32
 */
#include <windows.h>
#include <ntsecapi.h>
#include <stdlib.h>

/* Fills the buffer with random bytes. Like Windows' own, it returns TRUE
 * or not at all: its callers (Rust's standard library among them) do not
 * look at the result, so a failure ends the process rather than leave
 * bytes that are not random. */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        /* RtlGenRandom takes a ULONG: fill larger buffers in pieces. */
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk))
            abort();
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
