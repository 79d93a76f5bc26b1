/* Kernel ISA variants: in the default build the kernel files whose vector width is fixed at
 * compile time (conv.c, conv_group.c, conv_phase.c, conv_point.c, conv_shift.c, shift_plan.c)
 * and those whose arithmetic the convolutions' fused epilogues must reproduce bit for bit
 * (batchnorm.c, elementwise.c: compiled alike, they contract a*b+c into FMA alike) are compiled
 * once per ISA with LEGR_ISA_NAME set (avx512, avx2, sse). This header, included first by each,
 * renames their external functions to name_<isa>, and isa_dispatch.c calls the variant picked at
 * run time. A new external function of those files must be added here (three copies of an
 * unrenamed one do not link) and, if called from outside them, to isa_dispatch.c's list (else
 * it is undefined). With -DLEGR_NATIVE=ON (LEGR_ISA_NAME unset) nothing is renamed. */
#ifndef LEGR_NN_ISA_H
#define LEGR_NN_ISA_H

#ifdef LEGR_ISA_NAME
#define LEGR_ISA_CAT2(f, isa) f##_##isa
#define LEGR_ISA_CAT(f, isa) LEGR_ISA_CAT2(f, isa)
#define LEGR_ISA_RENAME(f) LEGR_ISA_CAT(f, LEGR_ISA_NAME)
/* Dispatched (declared in legr/layers.h and kernels.h; isa_dispatch.c lists them). */
#define conv_out_size LEGR_ISA_RENAME(conv_out_size)
#define im2col LEGR_ISA_RENAME(im2col)
#define col2im_acc LEGR_ISA_RENAME(col2im_acc)
#define conv_workspace_floats LEGR_ISA_RENAME(conv_workspace_floats)
#define conv_forward LEGR_ISA_RENAME(conv_forward)
#define conv_forward_affine LEGR_ISA_RENAME(conv_forward_affine)
#define conv_backward LEGR_ISA_RENAME(conv_backward)
#define conv_backward_set LEGR_ISA_RENAME(conv_backward_set)
#define conv_forward_ref LEGR_ISA_RENAME(conv_forward_ref)
#define conv_backward_ref LEGR_ISA_RENAME(conv_backward_ref)
#define conv_group_forward LEGR_ISA_RENAME(conv_group_forward)
#define conv_group_backward LEGR_ISA_RENAME(conv_group_backward)
#define bn_forward_train LEGR_ISA_RENAME(bn_forward_train)
#define bn_forward_eval LEGR_ISA_RENAME(bn_forward_eval)
#define bn_backward LEGR_ISA_RENAME(bn_backward)
#define bn_backward_set LEGR_ISA_RENAME(bn_backward_set)
#define bn_relu_forward_train LEGR_ISA_RENAME(bn_relu_forward_train)
#define bn_relu_forward_eval LEGR_ISA_RENAME(bn_relu_forward_eval)
#define bn_relu_backward LEGR_ISA_RENAME(bn_relu_backward)
#define relu_forward LEGR_ISA_RENAME(relu_forward)
#define relu_backward LEGR_ISA_RENAME(relu_backward)
#define relu_backward_set LEGR_ISA_RENAME(relu_backward_set)
#define relu6_forward LEGR_ISA_RENAME(relu6_forward)
#define relu6_backward LEGR_ISA_RENAME(relu6_backward)
#define add_forward LEGR_ISA_RENAME(add_forward)
#define add_backward LEGR_ISA_RENAME(add_backward)
#define add_backward_set LEGR_ISA_RENAME(add_backward_set)
#define add_relu_forward LEGR_ISA_RENAME(add_relu_forward)
#define add_relu_backward LEGR_ISA_RENAME(add_relu_backward)
#define bias_forward LEGR_ISA_RENAME(bias_forward)
#define bias_backward LEGR_ISA_RENAME(bias_backward)
/* Internal to the variant (conv_internal.h, shift_plan.h). */
#define conv_group_forward_ep LEGR_ISA_RENAME(conv_group_forward_ep)
#define conv_group_backward_any LEGR_ISA_RENAME(conv_group_backward_any)
#define conv_phase_workspace LEGR_ISA_RENAME(conv_phase_workspace)
#define conv_phase_forward LEGR_ISA_RENAME(conv_phase_forward)
#define conv_phase_backward LEGR_ISA_RENAME(conv_phase_backward)
#define conv_point_workspace LEGR_ISA_RENAME(conv_point_workspace)
#define conv_point_forward LEGR_ISA_RENAME(conv_point_forward)
#define conv_point_backward LEGR_ISA_RENAME(conv_point_backward)
#define conv_shift_workspace LEGR_ISA_RENAME(conv_shift_workspace)
#define conv_shift_forward LEGR_ISA_RENAME(conv_shift_forward)
#define conv_shift_backward LEGR_ISA_RENAME(conv_shift_backward)
#define conv_transpose_rows LEGR_ISA_RENAME(conv_transpose_rows)
#define shift_fill_grid LEGR_ISA_RENAME(shift_fill_grid)
#define shift_plan_floats LEGR_ISA_RENAME(shift_plan_floats)
#define shift_plan_init LEGR_ISA_RENAME(shift_plan_init)
#define shift_plan_start LEGR_ISA_RENAME(shift_plan_start)
#endif

#endif
