namespace XGenMM.Model.Kernels;

/// <summary>One product y[M, N] = x[M, K] W (+ bias), split by blocks of <see cref="PackedWeight.BlockColumns"/>
/// output columns: each participant streams its own part of the weight once for all M rows.</summary>
internal unsafe struct MatMulJob
{
    public PackedWeight Weight;
    public float* X;
    public float* Y;
    public int Rows;
    public int Units;
    public int Participants;

    public readonly (int From, int To) Share(int participant)
    {
        long from = (long)Units * participant / Participants, to = (long)Units * (participant + 1) / Participants;
        return ((int)from, (int)to);
    }

    public readonly void Execute(int fromBlock, int toBlock) => Weight.MultiplyBlocks(X, Y, Rows, fromBlock, toBlock);
}
