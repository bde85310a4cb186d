// moe_expert: one MoE expert's SwiGLU FFN on an AMD/Xilinx FPGA card, the
// kernel moed's xrt backend runs (loader/backend_xrt.c).  Vitis HLS C++.
//
// Interface (fpga/README.md has the full table; argument order matters, the
// host sets them by index):
//   0 x      const float*  m_axi gmem0  input rows [n][hidden]
//   1 w      const float*  m_axi gmem1  one expert slot: gate [inter][hidden],
//                                       up [inter][hidden], down [hidden][inter]
//   2 out    float*        m_axi gmem0  output rows [n][hidden]
//   3 n      int           rows (1..256 from moed)
//   4 hidden int           hidden size, <= MOE_MAX_HIDDEN
//   5 inter  int           expert intermediate size, <= MOE_MAX_INTER
//   6 dtype  int           0 = f32 weights (the only one so far)
// out[r] = down(silu(gate x[r]) * up x[r]), silu(v) = v / (1 + exp(-v)).
// Out-of-range dims or an unknown dtype leave out untouched.
//
// The same file compiles with g++ (pragmas ignored): moed's tests run it as
// a C-simulation of the card (tests/test_xrt.c).
//
// Rows are processed in tiles of TILE so that each weight row read from
// device memory serves TILE rows; LANES partial sums hide the f32 adder's
// latency in the pipelined dot products.  A first version: correct and
// synthesizable in intent, not tuned on hardware (see README.md).
#include <cmath>

#ifndef MOE_MAX_HIDDEN
#define MOE_MAX_HIDDEN 8192
#endif
#ifndef MOE_MAX_INTER
#define MOE_MAX_INTER 16384
#endif
#define TILE 8
#define LANES 8

static float silu(float v)
{
	return v / (1.0f + std::exp(-v));
}

// res[t] = sum_k wrow[k] * buf[t][k] for the TILE buffered rows.
template <int MAX>
static void dot_tile(const float *wrow, const float buf[TILE][MAX], int len, float res[TILE])
{
	float acc[TILE][LANES];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 0

	for (int t = 0; t < TILE; t++)
		for (int l = 0; l < LANES; l++)
			acc[t][l] = 0.0f;
dot:
	for (int k = 0; k < len; k++) {
#pragma HLS LOOP_TRIPCOUNT min = 64 max = 16384
#pragma HLS PIPELINE II = 1
		float wk = wrow[k];
		for (int t = 0; t < TILE; t++) {
#pragma HLS UNROLL
			acc[t][k % LANES] += wk * buf[t][k];
		}
	}
	for (int t = 0; t < TILE; t++) {
#pragma HLS UNROLL
		float s = 0.0f;
		for (int l = 0; l < LANES; l++)
			s += acc[t][l];
		res[t] = s;
	}
}

extern "C" void moe_expert(const float *x, const float *w, float *out, int n, int hidden,
			   int inter, int dtype)
{
#pragma HLS INTERFACE m_axi port = x offset = slave bundle = gmem0 max_read_burst_length = 64
#pragma HLS INTERFACE m_axi port = w offset = slave bundle = gmem1 max_read_burst_length = 64
#pragma HLS INTERFACE m_axi port = out offset = slave bundle = gmem0 max_write_burst_length = 64
#pragma HLS INTERFACE s_axilite port = x bundle = control
#pragma HLS INTERFACE s_axilite port = w bundle = control
#pragma HLS INTERFACE s_axilite port = out bundle = control
#pragma HLS INTERFACE s_axilite port = n bundle = control
#pragma HLS INTERFACE s_axilite port = hidden bundle = control
#pragma HLS INTERFACE s_axilite port = inter bundle = control
#pragma HLS INTERFACE s_axilite port = dtype bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
	static float xt[TILE][MOE_MAX_HIDDEN];
	static float act[TILE][MOE_MAX_INTER];
#pragma HLS ARRAY_PARTITION variable = xt complete dim = 1
#pragma HLS ARRAY_PARTITION variable = act complete dim = 1

	if (dtype != 0 || n <= 0 || hidden <= 0 || inter <= 0 || hidden > MOE_MAX_HIDDEN ||
	    inter > MOE_MAX_INTER)
		return;
	const long mat = (long)inter * hidden;
	const float *gate = w, *up = w + mat, *down = w + 2 * mat;

tiles:
	for (int r0 = 0; r0 < n; r0 += TILE) {
		int rows = n - r0 < TILE ? n - r0 : TILE;
load_x:
		for (int t = 0; t < TILE; t++)
			for (int k = 0; k < hidden; k++) {
#pragma HLS PIPELINE II = 1
				xt[t][k] = t < rows ? x[(long)(r0 + t) * hidden + k] : 0.0f;
			}
gate_up:
		for (int i = 0; i < inter; i++) {
			float g[TILE], u[TILE];
			dot_tile<MOE_MAX_HIDDEN>(gate + (long)i * hidden, xt, hidden, g);
			dot_tile<MOE_MAX_HIDDEN>(up + (long)i * hidden, xt, hidden, u);
			for (int t = 0; t < TILE; t++) {
#pragma HLS UNROLL
				act[t][i] = silu(g[t]) * u[t];
			}
		}
down_proj:
		for (int h = 0; h < hidden; h++) {
			float o[TILE];
			dot_tile<MOE_MAX_INTER>(down + (long)h * inter, act, inter, o);
			for (int t = 0; t < rows; t++)
				out[(long)(r0 + t) * hidden + h] = o[t];
		}
	}
}
