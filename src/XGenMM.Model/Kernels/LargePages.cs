using System.Runtime.InteropServices;

namespace XGenMM.Model.Kernels;

/// <summary>
/// Native memory for packed weights. A decode step streams every weight once, gigabytes at the real size: on 4 KiB
/// pages that is a TLB miss every 4 KiB and the hardware prefetcher stops at each page boundary. Large blocks are
/// aligned to 2 MiB and advised as huge pages (Linux transparent huge pages in <c>madvise</c> mode, the Debian
/// default); where the kernel declines, they are ordinary pages and nothing else changes.
/// </summary>
internal static unsafe partial class LargePages
{
    private const nuint HugePageBytes = 2 * 1024 * 1024;
    /// <summary>Below this a weight keeps 64-byte alignment: a small model's many small weights would otherwise each
    /// round up to a huge page's alignment for no gain.</summary>
    private const long MinimumBytes = 2 * (long)HugePageBytes;
    private const int MadviseHugePage = 14; // MADV_HUGEPAGE

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(void* address, nuint length, int advice);

    public static void* Allocate(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bytes, 1);
        if (bytes < MinimumBytes || !OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("XGENMM_HUGE_PAGES") == "0") return NativeMemory.AlignedAlloc((nuint)bytes, 64);
        void* memory = NativeMemory.AlignedAlloc((nuint)bytes, HugePageBytes);
        // Advice only: a kernel without THP, or with it off, answers an error and the memory is still good.
        _ = Madvise(memory, (nuint)bytes, MadviseHugePage);
        return memory;
    }

    public static void Free(void* memory) => NativeMemory.AlignedFree(memory);
}
