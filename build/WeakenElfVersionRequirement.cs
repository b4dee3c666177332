// MSBuild task (compiled by RoslynCodeTaskFactory from Directory.Build.targets) that marks one ELF version
// requirement (a Vernaux entry of .gnu.version_r) as weak, so the dynamic loader accepts a host library that
// lacks that version. Only used when the host's libstdc++ does not define the version.
#nullable enable
using System;
using System.IO;
using System.Text;

#if !ELF_PATCHER_ONLY
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public class WeakenElfVersionRequirement : Microsoft.Build.Utilities.Task
{
    [Required] public ITaskItem[] Files { get; set; } = Array.Empty<ITaskItem>();
    [Required] public string VersionName { get; set; } = "";

    private static readonly string[] LibStdCxxCandidates =
    {
        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
        "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
    };

    public override bool Execute()
    {
        string? hostLib = null;
        foreach (var c in LibStdCxxCandidates) { if (File.Exists(c)) { hostLib = c; break; } }
        if (hostLib == null)
        {
            Log.LogMessage(MessageImportance.Normal, "No host libstdc++ found; leaving TorchSharp glue untouched.");
            return true;
        }
        if (ContainsBytes(File.ReadAllBytes(hostLib), Encoding.ASCII.GetBytes(VersionName + "\0")))
        {
            Log.LogMessage(MessageImportance.Low, "{0} defines {1}; no patch needed.", hostLib, VersionName);
            return true;
        }
        foreach (var item in Files)
        {
            string path = item.ItemSpec;
            try
            {
                var result = XGenMM.Build.ElfVersionNeeds.Weaken(path, VersionName);
                Log.LogMessage(MessageImportance.High, "{0}: {1} ({2} lacks {3})", path, result, hostLib, VersionName);
            }
            catch (Exception ex)
            {
                Log.LogError("Could not weaken {0} in {1}: {2}", VersionName, path, ex.Message);
            }
        }
        return !Log.HasLoggedErrors;
    }

    private static bool ContainsBytes(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
        {
            int j = 0;
            while (j < needle.Length && haystack[i + j] == needle[j]) j++;
            if (j == needle.Length) return true;
        }
        return false;
    }

}
#endif

namespace XGenMM.Build
{
    /// <summary>Reads and edits the version-needed entries (.gnu.version_r) of a 64-bit little-endian ELF file.</summary>
    public static class ElfVersionNeeds
    {
        public const ushort VerFlgWeak = 0x2;
        private const uint ShtGnuVerneed = 0x6ffffffe;

        /// <summary>Byte offset and flags of the Vernaux entry named <paramref name="version"/>, or null if absent.</summary>
        public static (int Offset, ushort Flags)? Find(byte[] elf, string version)
        {
            if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
                throw new InvalidDataException("not an ELF file");
            if (elf[4] != 2 || elf[5] != 1) throw new InvalidDataException("only 64-bit little-endian ELF is supported");

            ulong shoff = BitConverter.ToUInt64(elf, 0x28);
            int shentsize = BitConverter.ToUInt16(elf, 0x3A);
            int shnum = BitConverter.ToUInt16(elf, 0x3C);
            for (int i = 0; i < shnum; i++)
            {
                int sh = checked((int)shoff + i * shentsize);
                if (BitConverter.ToUInt32(elf, sh + 4) != ShtGnuVerneed) continue;
                int secOffset = checked((int)BitConverter.ToUInt64(elf, sh + 0x18));
                uint link = BitConverter.ToUInt32(elf, sh + 0x28);
                int strSh = checked((int)shoff + (int)link * shentsize);
                int strOffset = checked((int)BitConverter.ToUInt64(elf, strSh + 0x18));

                int vn = secOffset;
                while (true)
                {
                    int cnt = BitConverter.ToUInt16(elf, vn + 2);
                    int aux = vn + (int)BitConverter.ToUInt32(elf, vn + 8);
                    for (int a = 0; a < cnt; a++)
                    {
                        int nameOff = strOffset + (int)BitConverter.ToUInt32(elf, aux + 8);
                        int end = Array.IndexOf(elf, (byte)0, nameOff);
                        if (Encoding.ASCII.GetString(elf, nameOff, end - nameOff) == version)
                            return (aux + 4, BitConverter.ToUInt16(elf, aux + 4));
                        uint next = BitConverter.ToUInt32(elf, aux + 12);
                        if (next == 0) break;
                        aux += (int)next;
                    }
                    uint vnNext = BitConverter.ToUInt32(elf, vn + 12);
                    if (vnNext == 0) break;
                    vn += (int)vnNext;
                }
            }
            return null;
        }

        /// <summary>Sets VER_FLG_WEAK on the Vernaux entry named <paramref name="version"/>. Returns what happened.</summary>
        public static string Weaken(string path, string version)
        {
            var entry = Find(File.ReadAllBytes(path), version);
            if (entry == null) return "no requirement on " + version;
            var (offset, flags) = entry.Value;
            if ((flags & VerFlgWeak) != 0) return "already weak";
            flags |= VerFlgWeak;
            // The build hard-links copy-local files to the NuGet cache to save disk: write a fresh file and move it
            // over the output path, so the link is broken and the cached original is never edited.
            string temp = path + ".weakening";
            File.Copy(path, temp, overwrite: true);
            using (var fs = new FileStream(temp, FileMode.Open, FileAccess.Write))
            {
                fs.Seek(offset, SeekOrigin.Begin);
                fs.WriteByte((byte)(flags & 0xff));
                fs.WriteByte((byte)(flags >> 8));
            }
            File.Delete(path); // unlinks this name only; File.Move cannot overwrite on netstandard2.0 (the task's target)
            File.Move(temp, path);
            return "marked weak";
        }
    }
}
