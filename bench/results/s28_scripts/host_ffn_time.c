/* Session 28: one expert of the OLMoE shape (H 2048, I 1024, bf16) on the host_ffn pool, T threads,
 * m rows, 96 jobs over 24 experts (302 MB), twice; built against engine/host_ffn.c of a tree:
 *   gcc -O2 -std=gnu11 -D_GNU_SOURCE -I. host_ffn_time.c engine/host_ffn.c -lm -lpthread */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>
#include "engine/host_ffn.h"
#define H 2048
#define I 1024
#define NE 24
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
	int T=atoi(argv[1]), m=atoi(argv[2]);
	size_t eb=(size_t)3*H*I;
	uint16_t *w=malloc(eb*NE*2);
	for(size_t i=0;i<eb*NE;i++) w[i]=(uint16_t)(0x3c00+(i*2654435761u>>20)%512);
	static float x[4][H], y[4][H];
	for(int t=0;t<4;t++)for(int i=0;i<H;i++)x[t][i]=(float)((i*7+t)%13)*0.01f;
	const float *xp[4]={x[0],x[1],x[2],x[3]}; float *yp[4]={y[0],y[1],y[2],y[3]};
	volatile uint32_t done; struct host_ffn *p; host_ffn_open(T,H,I,&done,&p);
	for(int rep=0;rep<2;rep++){ double t0=now(); uint32_t last=0; int n=96;
	for(int k=0;k<n;k++){ last=host_ffn_submit(p,w+eb*(k%NE),xp,m,yp); host_ffn_wait(p,last);} 
	printf("T=%d m=%d: %.1f us/expert\n",T,m,(now()-t0)/n*1e6);}
	host_ffn_close(p); return 0;}
