@testable import ScopeCUDA
import Testing

/// How the decode gemv covers a weight, and the launch configuration handed to cuLaunchKernelEx (no GPU needed).
@Suite struct LaunchShapeTests {
    @Test(arguments: [
        // k, n: loads, threads per column, blocks on 132 multiprocessors
        (2048, 8512, 1, 256, 258),  // Mamba-2 1.3B in_proj: 33 columns per block
        (4096, 2048, 2, 256, 256),  // its out_proj: 8 columns per block
        (8192, 2048, 4, 256, 256),  // Llama-3.2-1B down_proj
        (6144, 90, 4, 256, 90),  // a partial fourth load; one column per block
        (16384, 40, 8, 256, 40),
        (128, 4096, 1, 32, 256),  // Mamba-1 dt_proj: eight warps, each its own columns
        (1000, 37, 1, 128, 19),  // 125 chunks: four warps per column, two columns per block
    ])
    func gemvShape(_ c: (k: Int, n: Int, loads: Int, threads: Int, blocks: Int)) {
        let shape = GemvShape(k: c.k, columns: c.n, multiprocessors: 132)
        #expect(shape.loads == c.loads)
        #expect(shape.threadsPerColumn == c.threads)
        #expect(shape.blocks == c.blocks)
        // Every chunk of k is some thread's, and every column some block's.
        #expect(shape.loads * shape.threadsPerColumn * 8 >= c.k)
        let perBlock = (c.n + shape.blocks - 1) / shape.blocks
        #expect(perBlock * shape.blocks >= c.n && perBlock * (shape.blocks - 1) < c.n)
    }

    @Test func programmaticLaunchConfigIsLaidOutAsCudaHDeclaresIt() {
        let stream = OpaquePointer(bitPattern: 0x1234_5678)
        _ = ProgrammaticLaunch.withConfig(grid: (7, 8, 9), block: 256, shared: 4096, stream: stream) { config in
            let dims = (0..<7).map { config.load(fromByteOffset: 4 * $0, as: UInt32.self) }
            #expect(dims == [7, 8, 9, 256, 1, 1, 4096])
            #expect(config.load(fromByteOffset: 32, as: UInt.self) == 0x1234_5678)
            #expect(config.load(fromByteOffset: 48, as: UInt32.self) == 1)
            let attribute = UnsafeRawPointer(bitPattern: config.load(fromByteOffset: 40, as: UInt.self))!
            #expect(attribute.load(as: Int32.self) == 6)
            #expect(attribute.load(fromByteOffset: 8, as: Int32.self) == 1)
            return 0
        }
    }
}
