/*
 * train.h -- %train: stage 9 of the workflow, the tutorial CNN trained on
 * the loaded data by the trainer core (cnn.h).
 */
#ifndef PK_TRAIN_H
#define PK_TRAIN_H

#include "lib/stage.h"

int tr_train(st_ctx *c, const st_args *a, st_error *err);
extern const st_option tr_train_opts[];

/* Read a safetensors file holding exactly the network's ten float32
 * tensors into params (CNN_NPARAM floats). Strict; errors name the file,
 * the tensor and the offset. */
int tr_safetensors_read(const char *path, float *params, st_error *err);

#define TR_TRAIN_ROWS                                                                         \
  {"train", tr_train, 0, 0, ST_F_SLOW, "train",                                               \
   "%train [--epochs 2] [--batch-size 4] [--lr 0.001] [--momentum 0.9] [--device auto|cpu|cuda] " \
   "[--seed S] [--log-every 2000] [--init FILE] [--save FILE] [--threads N] [--name NAME] [--losses FILE] [--new] " \
   "[--from DIR|s3://BUCKET/PREFIX/ [--window 2] [--prefetch 2] [--cold] [--endpoint URL]] " \
   "[--order FILE]", \
   "Train the tutorial CNN on the loaded data (stage 9, \"train\").",                        \
   "The PyTorch CIFAR-10 tutorial network (conv 3->6 k5, pool, conv 6->16 k5, pool,\n"      \
   "fc 400-120-84-10), cross-entropy, SGD with momentum as torch.optim.SGD, inputs\n"       \
   "p/127.5 - 1 in CHW order, shuffled every epoch from --seed. Prints the original\n"      \
   "'[epoch, batch] loss: x.xxx' lines every --log-every batches with a live loss\n"        \
   "chart, then the test accuracy, a per-class table, images/s and the backend.\n"          \
   "The model stays in the session: a later %train continues from it (--new starts\n"      \
   "afresh), and after an interrupt `%train --epochs 0 --save FILE` saves the weights\n"    \
   "as they were at the last finished batch. --save/--init use safetensors with\n"         \
   "PyTorch's state_dict names (conv1.weight ... fc3.bias).\n"                              \
   "\n"                                                                                     \
   "--from DIR trains from the data_batch_N files of DIR (or DIR/cifar-10-batches-py)\n"   \
   "without %load, out of core: a reader thread maps, parses (the safe reader of\n"       \
   "%load), checks and copies the files while the current ones train. The shuffle:\n"     \
   "every epoch the file order is shuffled (one generator from --seed for all\n"         \
   "epochs), the files are taken --window W at a time in that order, and the\n"          \
   "images of each window are shuffled together (the images' generator from --seed);\n"  \
   "the last batch of a window may be smaller. The same seed gives the same order.\n"    \
   "At most W + --prefetch N files' images are held at once, whatever the set's size.\n" \
   "The progress and the input line show input MB/s and the data stall (the time\n"      \
   "the trainer waited for input; utilization = compute / (compute + stall)); a file\n"  \
   "that cannot be read stops training with its name, keeping the model of the last\n"  \
   "finished step. test_batch of DIR, when there, is the test split.\n"                    \
   "--from s3://BUCKET/PREFIX/ does the same with the objects below the prefix, each\n"   \
   "read ahead of use as %download reads one (ranged GETs in parallel, the ETag\n"        \
   "checked) with %upload's connection options and credentials.",                          \
   tr_train_opts},

#endif
