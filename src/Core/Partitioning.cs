using System.IO.Hashing;
using System.Runtime.CompilerServices;

namespace AlphaMesh.Core;

/// <summary>Routes an event to a partition by a hash of (tenant, customer), so that one customer's
/// events are always in one partition, in order, aggregated by one writer.</summary>
public static class Partitioning
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int PartitionOf(ReadOnlySpan<byte> tenant, ReadOnlySpan<byte> customer, int partitionCount)
        => PartitionOf(TenantSeed(tenant), customer, partitionCount);

    /// <summary>The tenant's part of the routing hash; a request computes it once for all its events.</summary>
    public static long TenantSeed(ReadOnlySpan<byte> tenant) => unchecked((long)XxHash3.HashToUInt64(tenant));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int PartitionOf(long tenantSeed, ReadOnlySpan<byte> customer, int partitionCount)
    {
        // Seed the customer's hash with the tenant's, so that equal customer ids of two tenants spread independently.
        ulong hash = XxHash3.HashToUInt64(customer, tenantSeed);
        return (int)(hash % (uint)partitionCount);
    }
}
