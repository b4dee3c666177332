namespace XGenMM.Model.Imaging;

/// <summary>
/// Which SigLIP tokens each perceiver group sees, and which of them are padding (LAVIS _encode_vision_x_anyres with
/// anyres_patch_sampling): group 0 is the global view; the crop tokens are laid out as the full
/// (rows*t) x (cols*t) token grid and cut into consecutive t*t-token chunks in raster order, so for more than one
/// column a group is a horizontal band across all columns, not a crop. The unpad mask blocks the tokens that cover
/// the black padding (unpad_image with keep_original_shape).
/// </summary>
public sealed record AnyResLayout
{
    /// <summary>[Views, t*t]: index view*t*t + token of the SigLIP token placed in each group slot.</summary>
    public required long[] GroupTokenIndex { get; init; }
    /// <summary>[Views, t*t]: 1 = visible to the perceiver as a key.</summary>
    public required byte[] KeyMask { get; init; }
    /// <summary>[rows*t, cols*t] unpad mask on the crop token grid.</summary>
    public required byte[] UnpadMaskGrid { get; init; }
    public required int Views { get; init; }
    public required int TokensPerView { get; init; }

    /// <param name="cols">Grid columns (0 for the non-anyres single view).</param>
    /// <param name="rows">Grid rows.</param>
    /// <param name="originalSize">(width, height) of the original image.</param>
    /// <param name="tokensPerSide">t = image size / patch size (27 for SigLIP-384/14).</param>
    public static AnyResLayout Create(int cols, int rows, (int Width, int Height) originalSize, int tokensPerSide)
    {
        int t = tokensPerSide, n = t * t;
        int crops = cols * rows;
        int views = 1 + crops;
        var index = new long[views * n];
        var keyMask = new byte[views * n];
        for (int i = 0; i < n; i++) { index[i] = i; keyMask[i] = 1; }
        int ht = rows * t, wt = cols * t;
        var grid = new byte[ht * wt];
        if (crops == 0)
            return new AnyResLayout { GroupTokenIndex = index, KeyMask = keyMask, UnpadMaskGrid = grid, Views = views, TokensPerView = n };

        Array.Fill(grid, (byte)1);
        var (w, h) = originalSize;
        if ((double)w / h > (double)wt / ht)
        {
            double scale = (double)wt / w;
            int newH = (int)(h * scale);
            int pad = (ht - newH) / 2;
            for (int r = 0; r < ht; r++)
                if (r < pad || r >= ht - pad) Array.Clear(grid, r * wt, wt);
        }
        else
        {
            double scale = (double)ht / h;
            int newW = (int)(w * scale);
            int pad = (wt - newW) / 2;
            for (int r = 0; r < ht; r++)
                for (int c = 0; c < wt; c++)
                    if (c < pad || c >= wt - pad) grid[r * wt + c] = 0;
        }
        for (int g = 0; g < ht * wt; g++)
        {
            int row = g / wt, col = g % wt;
            int view = 1 + row / t * cols + col / t;
            int token = row % t * t + col % t;
            index[n + g] = (long)view * n + token;
            keyMask[n + g] = grid[g];
        }
        return new AnyResLayout { GroupTokenIndex = index, KeyMask = keyMask, UnpadMaskGrid = grid, Views = views, TokensPerView = n };
    }
}
