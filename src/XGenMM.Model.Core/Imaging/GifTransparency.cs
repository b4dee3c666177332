namespace XGenMM.Model.Imaging;

/// <summary>
/// The palette colour of the first GIF frame's transparent index. Skia returns transparent GIF pixels as
/// (0, 0, 0, 0), while PIL keeps them as that palette index (and fills the area outside frame 0 with it), so
/// <c>convert("RGB")</c> shows the palette colour; this restores it. Walks the block structure only up to the
/// first image descriptor; every step advances, so hostile input terminates.
/// </summary>
internal static class GifTransparency
{
    public static (byte R, byte G, byte B)? FirstFrameColor(ReadOnlySpan<byte> gif)
    {
        if (gif.Length < 13) return null;
        int pos = 13;
        ReadOnlySpan<byte> globalTable = default;
        if ((gif[10] & 0x80) != 0)
        {
            int size = 3 << ((gif[10] & 7) + 1);
            if (pos + size > gif.Length) return null;
            globalTable = gif.Slice(pos, size);
            pos += size;
        }

        int? transparentIndex = null;
        while (pos < gif.Length)
        {
            byte block = gif[pos];
            if (block == 0x21) // extension: label, then data sub-blocks
            {
                if (pos + 2 >= gif.Length) return null;
                byte label = gif[pos + 1];
                pos += 2;
                // Graphic control extension: size 4, packed (bit 0 = has transparency), delay x2, index.
                if (label == 0xF9 && pos + 5 <= gif.Length && gif[pos] == 4)
                    transparentIndex = (gif[pos + 1] & 1) != 0 ? gif[pos + 4] : null;
                pos = SkipSubBlocks(gif, pos);
            }
            else if (block == 0x2C) // image descriptor of frame 0
            {
                if (transparentIndex is not { } index || pos + 10 > gif.Length) return null;
                byte packed = gif[pos + 9];
                ReadOnlySpan<byte> table = globalTable;
                if ((packed & 0x80) != 0)
                {
                    int size = 3 << ((packed & 7) + 1);
                    if (pos + 10 + size > gif.Length) return null;
                    table = gif.Slice(pos + 10, size);
                }
                return index * 3 + 2 < table.Length ? (table[index * 3], table[(index * 3) + 1], table[(index * 3) + 2]) : null;
            }
            else
            {
                return null; // trailer or garbage before any frame
            }
        }
        return null;
    }

    private static int SkipSubBlocks(ReadOnlySpan<byte> gif, int pos)
    {
        while (pos < gif.Length)
        {
            int length = gif[pos];
            pos += 1 + length;
            if (length == 0) break;
        }
        return pos;
    }
}
