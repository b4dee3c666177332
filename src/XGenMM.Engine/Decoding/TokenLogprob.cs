namespace XGenMM.Engine.Decoding;

/// <summary>One alternative of a token event's top log probabilities: the token, its text alone, and its logprob.</summary>
public readonly record struct TokenLogprob(int TokenId, string Text, double Logprob);
